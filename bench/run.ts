/**
 * `npm run bench [-- NAME...]`: runs the benchmarks (all by default) and writes
 * BENCHMARKS.md. Each figure is printed next to a baseline measured in the same run,
 * since these machines are shared and noisy. With names, only those sections are
 * re-measured; the others are kept from the existing BENCHMARKS.md.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { bootBenchmark } from "./boot.ts";
import { devicesBenchmark } from "./devices.ts";
import { ext2Benchmark } from "./ext2.ts";
import { linuxNodeBenchmark } from "./linux-node.ts";
import { netDriverBenchmark } from "./net-driver.ts";
import { smpBenchmark } from "./smp.ts";
import { virtiofsBenchmark } from "./virtiofs.ts";
import { webServerBenchmark } from "./webserver.ts";
import { webServerCostBenchmark } from "./webserver-cost.ts";

const BENCHMARKS: Record<string, (work: string) => Promise<string>> = {
  boot: bootBenchmark,
  devices: devicesBenchmark,
  "net-driver": netDriverBenchmark,
  webserver: webServerBenchmark,
  "webserver-cost": webServerCostBenchmark,
  "linux-node": linuxNodeBenchmark,
  ext2: ext2Benchmark,
  virtiofs: virtiofsBenchmark,
  smp: smpBenchmark,
};

const output = join(import.meta.dirname, "../BENCHMARKS.md");
const wanted = process.argv.slice(2);
for (const name of wanted) {
  if (!(name in BENCHMARKS)) {
    console.error(`bench: unknown benchmark '${name}' (known: ${Object.keys(BENCHMARKS).join(", ")})`);
    process.exit(2);
  }
}

/** Sections of the existing file, keyed by benchmark name (marked with HTML comments). */
function previousSections(): Map<string, string> {
  const sections = new Map<string, string>();
  if (!existsSync(output)) return sections;
  const text = readFileSync(output, "utf8");
  for (const m of text.matchAll(/<!-- bench:(\S+) -->\n([\s\S]*?)<!-- \/bench:\1 -->/g)) sections.set(m[1]!, m[2]!);
  return sections;
}

const work = mkdtempSync(join(tmpdir(), "torito-bench-"));
try {
  const kept = previousSections();
  const sections: string[] = [];
  for (const [name, run] of Object.entries(BENCHMARKS)) {
    let body: string;
    if (wanted.length === 0 || wanted.includes(name)) {
      console.log(`bench: ${name}`);
      body = await run(work);
    } else {
      body = kept.get(name) ?? `_${name}: not measured yet (npm run bench -- ${name})._\n`;
    }
    sections.push(`<!-- bench:${name} -->\n${body.endsWith("\n") ? body : body + "\n"}<!-- /bench:${name} -->\n`);
  }
  const qemu = execFileSync("qemu-system-x86_64", ["--version"], { encoding: "utf8" }).split("\n")[0];
  const doc = [
    "# Benchmarks",
    "",
    "Written by `npm run bench` (bench/run.ts; `npm run bench -- NAME` re-measures one section).",
    "Every figure comes with a baseline measured in the same run on the same machine.",
    "",
    `Last run: ${new Date().toISOString().slice(0, 10)} on ${cpus().length} × ${cpus()[0]?.model ?? "unknown CPU"},`,
    `${qemu}, Node ${process.version}. KVM here is a nested software hypervisor (ring-0 guest code`,
    "is emulated instruction by instruction), so \"kvm\" figures are not bare-metal KVM figures. The machine is",
    "shared: treat ratios against the same-run baselines as the signal, absolute figures as noisy.",
    "",
    ...sections,
  ].join("\n");
  writeFileSync(output, doc);
  console.log("wrote BENCHMARKS.md");
} finally {
  rmSync(work, { recursive: true, force: true });
}
