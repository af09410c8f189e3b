/**
 * Per-request cost of the WebServer appliance's request path, in instructions (issue 4):
 * bench/profile/web-host.ts (the real network unit, scheduler, HTTP server and appliance
 * handler over a scripted keep-alive client; no virtio, no VM) under callgrind, for the working
 * tree and for a baseline revision checked out in a temporary git worktree, in the same run.
 * Instruction counts do not move with the machine's load, unlike requests/s on a shared host.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { table } from "./lib.ts";

/** The revision before the per-request work of issue 4 (BENCHMARKS.md then: 3253 req/s, kvm, tap). */
export const COST_BASELINE = process.env.TORITO_COST_BASELINE ?? "6eda835";
const CONNECTIONS = 30, PER_CONNECTION = 20;
const repo = join(import.meta.dirname, "..");

interface Count { instructionsPerRequest: number }

function count(tree: string): Count {
  const r = spawnSync(process.execPath, ["--import", "tsx", join(tree, "bench/profile/run.ts"), String(CONNECTIONS), String(PER_CONNECTION), "30", "--count"],
    { cwd: tree, encoding: "utf8" });
  const line = r.stdout.trim().split("\n").pop() ?? "";
  if (r.status !== 0 || !line.startsWith("{")) throw new Error(`instruction count in ${tree} failed: ${r.stderr}${r.stdout}`);
  return JSON.parse(line) as Count;
}

/** Runs the benchmark; returns its BENCHMARKS.md section. */
export async function webServerCostBenchmark(work: string): Promise<string> {
  const out = ["## WebServer appliance: instructions per request (issue 4)", ""];
  if (spawnSync("valgrind", ["--version"]).status !== 0) {
    return [...out, "_Not measured: valgrind is not installed (apt-get install valgrind)._", ""].join("\n");
  }
  execFileSync("sh", [join(repo, "bench/profile/build.sh")], { stdio: "ignore" });
  const base = mkdtempSync(join(tmpdir(), "torito-cost-base-"));
  rmSync(base, { recursive: true });
  execFileSync("git", ["-C", repo, "worktree", "add", "--detach", base, COST_BASELINE], { stdio: "ignore" });
  let before: Count, after: Count;
  try {
    // the baseline gets today's harness (it only uses kernel interfaces the baseline has)
    cpSync(join(repo, "bench/profile"), join(base, "bench/profile"), { recursive: true });
    symlinkSync(join(repo, "node_modules"), join(base, "node_modules"));
    mkdirSync(join(base, "build/profile"), { recursive: true });
    symlinkSync(join(repo, "build/quickjs"), join(base, "build/quickjs"));
    symlinkSync(join(repo, "build/profile/qjs-prof"), join(base, "build/profile/qjs-prof"));
    before = count(base);
    after = count(repo);
  } finally {
    execFileSync("git", ["-C", repo, "worktree", "remove", "--force", base], { stdio: "ignore" });
    if (existsSync(base)) rmSync(base, { recursive: true, force: true });
  }
  void work;
  const rows = [
    [`baseline (${COST_BASELINE})`, before.instructionsPerRequest.toLocaleString("en-US"), "1.00"],
    ["working tree", after.instructionsPerRequest.toLocaleString("en-US"), (after.instructionsPerRequest / before.instructionsPerRequest).toFixed(2)],
  ];
  console.log(`webserver cost: ${JSON.stringify({ before, after })}`);
  out.push(
    "`bench/profile/web-host.ts` under `valgrind --tool=callgrind` on the host build of the guest's QuickJS",
    "(`bench/profile/build.sh`): the kernel's network unit, scheduler, HTTP server and the appliance's handler",
    `serving the 612-byte file to a scripted keep-alive client (${CONNECTIONS} connections, each request carrying the`,
    "previous response's ACK, like wrk); no virtio and no VM exits (under wrk the guest makes ~0.07 transmit",
    "notifications and no halts per request, and ~4.5 event-loop passes, most of them polls that find nothing while",
    "requests are on their way: ~9 µs of ~100: `node --import tsx bench/web-quick.ts kvm 4 1 --stats`).",
    "Instructions per request of the whole process (harness included), from two runs of different lengths, on a",
    "virtual clock: repeatable to ~0.2 %, whatever the machine's load. The baseline is checked out in a temporary",
    "git worktree and measured in the same run with the same harness, its bundle made as that tree's image build",
    "makes it (the working tree's rewrites `let`/`const` as `var`s, host/build.ts; the baseline's did not).",
    "",
    table(["kernel and appliance", "instructions per request", "vs baseline"], rows),
    "",
  );
  return out.join("\n");
}
