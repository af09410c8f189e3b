/**
 * Boot benchmark (issue 2): image size, QEMU launch → first app line against the VMM
 * floor measured in the same run, the guest's own first-instruction → first-line time,
 * and the smallest --mem that boots.
 */
import { execFileSync } from "node:child_process";
import { statSync } from "node:fs";
import { join } from "node:path";
import { buildImage } from "../host/build.ts";
import { kvmUsable, type Accel } from "../host/run.ts";
import { pvhTestImage } from "../test/fixtures/pvh-test-image.ts";
import { fmt, launch, median, runOptions, table } from "./lib.ts";

const RUNS = 15;

async function smallestMem(image: string, accel: Accel): Promise<number> {
  const boots = async (mib: number) => {
    const r = await launch(runOptions(image, accel, mib << 20), "torito: first line", 30_000);
    return r.guestCode === 0 && r.stdout.includes("torito: first line");
  };
  let lo = 1, hi = 64;                       // lo fails (assumed), hi boots
  if (!(await boots(hi))) return NaN;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (await boots(mid)) hi = mid;
    else lo = mid;
  }
  return hi;
}

export async function bootBenchmark(work: string): Promise<string> {
  const image = join(work, "boot.elf");
  const built = await buildImage({ entry: join(import.meta.dirname, "apps/boot.ts"), output: image });
  const stripped = join(work, "boot.stripped.elf");
  execFileSync("strip", ["-o", stripped, image]);
  const hello = join(work, "hello.elf");
  await buildImage({ entry: join(import.meta.dirname, "../examples/hello/hello.ts"), output: hello });
  const helloStripped = join(work, "hello.stripped.elf");
  execFileSync("strip", ["-o", helloStripped, hello]);
  const floor = pvhTestImage("hello");          // prints "hi" at its first instructions

  const accels: Accel[] = kvmUsable().ok ? ["kvm", "tcg"] : ["tcg"];
  const rows: (string | number)[][] = [];
  for (const accel of accels) {
    const floorMs: number[] = [], toritoMs: number[] = [], inGuest: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const f = await launch(runOptions(floor, accel), "hi");
      const t = await launch(runOptions(image, accel), "torito: first line");
      if (t.guestCode !== 0) throw new Error(`boot app failed under ${accel}: ${t.stdout}`);
      floorMs.push(f.markerMs);
      toritoMs.push(t.markerMs);
      const times = JSON.parse(t.stdout.split("\n")[1]!) as Record<string, number>;
      inGuest.push(times["firstOutput"]!);
    }
    const mem = await smallestMem(image, accel);
    const f = median(floorMs), t = median(toritoMs);
    rows.push([accel, fmt(f), fmt(t), fmt(t - f), fmt(median(inGuest), 2), `${mem} MiB`]);
    console.log(`boot ${accel}: floor ${fmt(f)} ms, torito ${fmt(t)} ms, in-guest ${fmt(median(inGuest), 2)} ms, min mem ${mem} MiB`);
  }
  const kib = (p: string) => `${(statSync(p).size / 1024).toFixed(0)} KiB`;
  return [
    "## Boot (issue 2)",
    "",
    `Medians of ${RUNS} interleaved runs. *Floor*: the same QEMU command line booting a PVH image that`,
    "writes \"hi\" to the UART at its first instructions (`test/fixtures/pvh-test-image.S`); *Torito*: the",
    "boot app (`bench/apps/boot.ts`) printing its first line. Both are timed from spawning QEMU to the",
    "line on QEMU's stdout. *In-guest*: the guest's TSC from its first instruction to the first console",
    "write (`bootTimes().firstOutput`). *Min --mem*: smallest whole MiB that boots the app.",
    "",
    table(["accel", "floor (ms)", "Torito first line (ms)", "over floor (ms)", "in-guest (ms)", "min --mem"], rows),
    "",
    `Image sizes (stripped): boot app ${kib(stripped)}, hello ${kib(helloStripped)}` +
      ` (unstripped hello ${kib(hello)}; bytecode of the boot app ${(built.bytecodeBytes / 1024).toFixed(0)} KiB).`,
    "",
  ].join("\n");
}
