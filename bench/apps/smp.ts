// SMP benchmark app: with `ping` as its argument, core 0 measures message round trips to
// core 1 back to back (core 1 busy-polls) and with a pause between them long enough for
// core 1 to halt (each ping then wakes it with an IPI); otherwise it times how long the
// other cores take to answer their first call after boot.
import { args, bootTimes, cores, exit } from "torito";

cores.expose({ up: () => performance.now() });

if (cores.id === 0) {
  console.log("torito: first line");
  const up: number[] = [];
  for (let i = 1; i < cores.count; i++) up.push((await cores.run(i, "up")) as number);
  const allUp = performance.now();
  const result: Record<string, unknown> = { ...bootTimes(), cores: cores.count, allUp, coresUp: up };
  if (args[0] === "ping" && cores.count > 1) {
    let reply: (() => void) | undefined;
    const stop = cores.onMessage(() => reply!());
    const ping = () => new Promise<void>((resolve) => { reply = resolve; cores.postMessage(1, 0); });
    const sample = async (n: number, pauseMs: number) => {
      const times: number[] = [];
      for (let i = 0; i < n; i++) {
        if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
        const t0 = performance.now();
        await ping();
        times.push(performance.now() - t0);
      }
      return times.sort((a, b) => a - b);
    };
    await sample(50, 0);                        // warm-up
    const hot = await sample(2000, 0);
    const cold = await sample(40, 10);          // > the 2 ms idle spin: core 1 halts
    stop();
    const q = (t: number[], p: number) => t[Math.min(t.length - 1, Math.floor(p * t.length))]!;
    result["hotUs"] = [q(hot, 0.5) * 1e3, q(hot, 0.99) * 1e3];
    result["coldUs"] = [q(cold, 0.5) * 1e3, q(cold, 0.9) * 1e3];
  }
  console.log(JSON.stringify(result));
  // Let QEMU's serial backend drain before powering off (TCG can drop a busy FIFO at exit).
  setTimeout(() => exit(0), 50);
} else if (args[0] === "ping") {
  cores.onMessage((e) => cores.postMessage(e.from, e.data));
}
