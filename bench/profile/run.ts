/**
 * Bundles bench/profile/web-host.ts, runs it under build/profile/qjs-prof and prints where
 * the samples went (self and inclusive, by function), plus microseconds per request.
 *   node --import tsx bench/profile/run.ts [connections] [requestsPerConn] [batch] [--no-prof] [--count] [--timestamps]
 * --count: instructions per request instead (valgrind --tool=callgrind, two runs of different
 * lengths, so set-up and warm-up cancel out): a figure that the machine's load does not move.
 * --timestamps: the client sends RFC 7323 timestamps on every segment, as Linux peers do.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { origin as originIn, out, prepareHarness } from "./harness.ts";

const { bundle: bundlePath, site: sitePack } = await prepareHarness();
const qjs = join(out, "qjs-prof");
if (!existsSync(qjs)) execFileSync("sh", [join(import.meta.dirname, "build.sh")], { stdio: "inherit" });
const args = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const profile = !process.argv.includes("--no-prof");
/** --timestamps: the scripted client sends RFC 7323 timestamps, as Linux (wrk over a tap) does. */
const client = process.argv.includes("--timestamps") ? "ts" : "plain";
if (process.argv.includes("--count")) {
  const spawnCount = (perConn: number): number => {
    const r = spawnSync("valgrind", ["--tool=callgrind", "--callgrind-out-file=/dev/null", qjs, "-m", bundlePath, sitePack,
      args[0] ?? "30", String(perConn), args[2] ?? "30", "-", client], { encoding: "utf8" });
    const m = /Collected : (\d+)/.exec(r.stderr);
    if (r.status !== 0 || !m) throw new Error(`callgrind run failed: ${r.stderr}${r.stdout}`);
    return Number(m[1]);
  };
  const lo = Number(args[1] ?? 20), hi = 2 * lo;
  const a = spawnCount(lo), b = spawnCount(hi);
  const perRequest = (b - a) / ((hi - lo) * Number(args[0] ?? 30));
  console.log(JSON.stringify({ instructionsPerRequest: Math.round(perRequest), runs: [a, b] }));
  process.exit(0);
}
const folded = join(out, "web-host.folded");
const result = execFileSync(qjs, ["-m", bundlePath, sitePack, args[0] ?? "30", args[1] ?? "200", args[2] ?? "30", profile ? folded : "-", client], { encoding: "utf8" });
console.log(result.trim());
if (profile) {
  // Functions are named by the bundle line they start on (the bytecode keeps no names here).
  const bundle = readFileSync(bundlePath, "utf8").split("\n");
  const origin = (line: number): string => originIn(bundle, line);
  const label = (f: string): string => {
    const m = /^<(?:null|anon)>:(\d+)$/.exec(f) ?? /^.*:(\d+)$/.exec(f);
    if (f.startsWith("native@")) return nativeNames.get(f) ?? f;
    if (!m) return f;
    const line = Number(m[1]);
    return `${(bundle[line - 1] ?? "").trim().slice(0, 70)}  [${origin(line)}:${line}]`;
  };
  const raw = readFileSync(folded, "utf8");
  const natives = [...new Set(raw.match(/native@0x[0-9a-f]+/g) ?? [])];
  const nativeNames = new Map<string, string>();
  if (natives.length) {
    const r = execFileSync("addr2line", ["-f", "-s", "-e", qjs, ...natives.map((n) => n.slice(7))], { encoding: "utf8" }).split("\n");
    natives.forEach((n, i) => nativeNames.set(n, `native ${r[2 * i]}`));
  }
  const lines = raw.trim().split("\n").map((l) => {
    const at = l.lastIndexOf("@");
    return l.slice(0, at).split(";").filter(Boolean).map(label).join(";") + ";" + l.slice(at);
  });
  const self = new Map<string, number>(), incl = new Map<string, number>(), rips = new Map<string, number>();
  for (const line of lines) {
    const at = line.lastIndexOf("@");
    const frames = line.slice(0, at).split(";").filter(Boolean);
    const top = frames[frames.length - 1] ?? "(none)";
    self.set(top, (self.get(top) ?? 0) + 1);
    for (const f of new Set(frames)) incl.set(f, (incl.get(f) ?? 0) + 1);
    const rip = line.slice(at + 1);
    rips.set(rip, (rips.get(rip) ?? 0) + 1);
  }
  // C functions by instruction pointer (addr2line over the non-PIE binary)
  const ripList = [...rips.keys()];
  const names = execFileSync("addr2line", ["-f", "-s", "-e", qjs, ...ripList], { encoding: "utf8", maxBuffer: 1 << 26 }).split("\n");
  const cfun = new Map<string, number>();
  ripList.forEach((rip, i) => { const n = names[2 * i] ?? "?"; cfun.set(n, (cfun.get(n) ?? 0) + rips.get(rip)!); });
  const total = lines.length;
  const show = (title: string, m: Map<string, number>, n: number) => {
    console.log(`\n${title} (${total} samples)`);
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(`${(100 * v / total).toFixed(1).padStart(6)}%  ${k}`);
  };
  show("self, by JavaScript function", self, 45);
  show("inclusive, by JavaScript function", incl, 60);
  show("C functions (where the CPU was)", cfun, 30);
}
