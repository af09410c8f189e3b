// An uncaught error: Torito prints its stack with TypeScript file names and lines, and
// the VM exits with code 1, like Node.
//   npx torito build examples/crash/crash.ts -o crash.elf && npx torito run crash.elf
interface Config {
  port: number;
}

function parseConfig(text: string): Config {
  if (!text.trim().startsWith("{")) {
    throw new Error(`config is not JSON: ${JSON.stringify(text)}`);
  }
  return JSON.parse(text) as Config;
}

function loadConfig(): Config {
  return parseConfig("port = 8080");
}

console.log("starting");
const config = loadConfig();
console.log(`listening on ${config.port}`);
