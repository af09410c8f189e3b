/**
 * SMP benchmark (issue 6): message round-trip latency between two cores, and boot time with
 * 1, 2 and 4 vCPUs (QEMU spawn to core 0's first line, and to every core having answered a
 * call), from bench/apps/smp.ts.
 */
import { cpus } from "node:os";
import { join } from "node:path";
import { buildImage } from "../host/build.ts";
import { kvmUsable, type Accel, type RunOptions } from "../host/run.ts";
import { fmt, launch, median, runOptions, table, type Launch } from "./lib.ts";

const RUNS = 9;
const CPU_COUNTS = [1, 2, 4];

interface Result {
  firstOutput: number;
  allUp: number;
  hotUs?: [number, number];
  coldUs?: [number, number];
}

/** Boots the app and parses its result line. Under a loaded host QEMU's UART can drop the
 *  tail of a line at power-off (the guest does not wait on the FIFO), so a run whose line
 *  does not parse is repeated, up to 3 times. */
async function measure(o: RunOptions, timeoutMs = 60_000): Promise<{ launch: Launch; result: Result }> {
  for (let attempt = 1; ; attempt++) {
    const r = await launch(o, "torito: first line", timeoutMs);
    if (r.guestCode !== 0) throw new Error(`smp bench app failed (${o.accel}, ${o.cpus} cpus): ${r.stdout}`);
    const line = r.stdout.split("\n").find((l) => l.startsWith("{"));
    try {
      return { launch: r, result: JSON.parse(line ?? "") as Result };
    } catch (e) {
      if (attempt === 3) throw new Error(`smp bench app printed no result line:\n${r.stdout}`, { cause: e });
    }
  }
}

/** Runs the benchmark and returns its markdown section for BENCHMARKS.md. */
export async function smpBenchmark(work: string): Promise<string> {
  const image = join(work, "smp.elf");
  await buildImage({ entry: join(import.meta.dirname, "apps/smp.ts"), output: image });
  const accels: Accel[] = kvmUsable().ok ? ["kvm", "tcg"] : ["tcg"];
  const bootRows: (string | number)[][] = [];
  const pingRows: (string | number)[][] = [];
  for (const accel of accels) {
    for (const n of CPU_COUNTS) {
      const first: number[] = [], up: number[] = [], guestFirst: number[] = [], guestUp: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const { launch: r, result: res } = await measure({ ...runOptions(image, accel), cpus: n });
        first.push(r.markerMs);
        up.push(r.exitMs);
        guestFirst.push(res.firstOutput);
        guestUp.push(res.allUp);
      }
      bootRows.push([accel, n, fmt(median(first)), fmt(median(guestFirst), 2), fmt(median(guestUp), 2), fmt(median(up))]);
      console.log(`smp boot ${accel} ${n} cpus: first line ${fmt(median(first))} ms, all cores up in-guest ${fmt(median(guestUp), 2)} ms`);
    }
    const hot: number[] = [], hot99: number[] = [], cold: number[] = [], cold90: number[] = [];
    for (let i = 0; i < 3; i++) {
      const { result: res } = await measure({ ...runOptions(image, accel, 64 << 20, ["ping"]), cpus: 2 }, 120_000);
      hot.push(res.hotUs![0]); hot99.push(res.hotUs![1]); cold.push(res.coldUs![0]); cold90.push(res.coldUs![1]);
    }
    pingRows.push([accel, fmt(median(hot), 1), fmt(median(hot99), 1), fmt(median(cold), 0), fmt(median(cold90), 0)]);
    console.log(`smp ping ${accel}: hot ${fmt(median(hot), 1)} us, after a halt ${fmt(median(cold), 0)} us`);
  }
  return [
    "## SMP (issue 6)",
    "",
    `Boot: medians of ${RUNS} runs of \`bench/apps/smp.ts\` (64 MiB). *First line*: QEMU spawn to core 0's`,
    "first console line (host clock). *In-guest first output* and *all cores up*: the guest's TSC from the",
    "first instruction to core 0's first write, and to every other core having answered a `cores.run`",
    "call (its runtime, kernel and app top level are up). *Exit*: QEMU spawn to QEMU exit.",
    `The host has ${cpus().length} CPUs: with 4 vCPUs, cores share host CPUs.`,
    "",
    table(["accel", "vCPUs", "first line (ms)", "in-guest first output (ms)", "in-guest all cores up (ms)", "exit (ms)"], bootRows),
    "",
    "Message round trip core 0 → core 1 → core 0 (`cores.postMessage` both ways, a small number as the",
    "message), measured on core 0 with `performance.now()`; medians of 3 boots. *Busy*: 2000 back-to-back",
    "round trips while core 1 polls its rings; *after a halt*: 40 round trips, each 10 ms after the",
    "previous one, so core 1 has halted (idle spin 2 ms) and the message wakes it with an IPI.",
    "",
    table(["accel", "busy p50 (µs)", "busy p99 (µs)", "after a halt p50 (µs)", "after a halt p90 (µs)"], pingRows),
    "",
  ].join("\n");
}
