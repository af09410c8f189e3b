/**
 * `npm run bench`: runs every benchmark and writes BENCHMARKS.md. Each figure is printed
 * next to a baseline measured in the same run, since these machines are shared and noisy.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { bootBenchmark } from "./boot.ts";
import { devicesBenchmark } from "./devices.ts";

const work = mkdtempSync(join(tmpdir(), "torito-bench-"));
try {
  const sections = [await bootBenchmark(work), await devicesBenchmark(work)];
  const qemu = execFileSync("qemu-system-x86_64", ["--version"], { encoding: "utf8" }).split("\n")[0];
  const doc = [
    "# Benchmarks",
    "",
    "Written by `npm run bench` (bench/run.ts). Every figure comes with a baseline measured in the",
    "same run on the same machine.",
    "",
    `Last run: ${new Date().toISOString().slice(0, 10)} on ${cpus().length} × ${cpus()[0]?.model ?? "unknown CPU"},`,
    `${qemu}, Node ${process.version}. KVM here is a nested software hypervisor (ring-0 guest code`,
    "is emulated; see DESIGN.md), so \"kvm\" figures are not bare-metal KVM figures.",
    "",
    ...sections,
  ].join("\n");
  writeFileSync(join(import.meta.dirname, "../BENCHMARKS.md"), doc);
  console.log("wrote BENCHMARKS.md");
} finally {
  rmSync(work, { recursive: true, force: true });
}
