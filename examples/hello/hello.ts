// The smallest Torito microservice: prints, reads its arguments, waits on timers with
// async/await, and exits with a code. Run it with:
//   npx torito build examples/hello/hello.ts -o hello.elf && npx torito run hello.elf -- Ada --exit-code=3
import { args, exit } from "torito";

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const names = args.filter((a) => !a.startsWith("--"));
console.log(`Hello, ${names.length ? names.join(" and ") : "world"}, from Torito!`);
console.log(`args: ${JSON.stringify(args)}`);
console.log(`date: ${new Date().toISOString()}`);

// Timers fire in deadline order, whatever order they were created in.
const order: number[] = [];
await Promise.all([30, 10, 20].map(async (ms) => {
  await sleep(ms);
  order.push(ms);
}));
console.log(`timers: ${order.join(" ")}`);

const start = performance.now();
await sleep(50);
console.log(`slept: ${Math.round(performance.now() - start)} ms`);

const codeArg = args.find((a) => a.startsWith("--exit-code="));
if (codeArg) exit(Number(codeArg.slice("--exit-code=".length)));
// Otherwise the event loop runs dry and the VM powers off with code 0, like Node.
