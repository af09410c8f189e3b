/** Shared helpers for the benchmarks: statistics, QEMU launches, markdown tables. */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAX_CPUS, qemuArgs, QEMU_BINARY, writeBootSeed, type Accel, type RunOptions } from "../host/run.ts";

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function percentile(values: readonly number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** One boot-seed file (enough for MAX_CPUS cores) for every guest of a benchmark run; `torito run` writes a fresh one per run. */
let seedFile: string | undefined;
export function benchSeed(): string {
  if (seedFile === undefined) {
    const dir = mkdtempSync(join(tmpdir(), "torito-bench-seed-"));
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
    seedFile = writeBootSeed(dir, MAX_CPUS);
  }
  return seedFile;
}

/** The options `torito run IMAGE` would use (with its fw_cfg boot seed). */
export function runOptions(image: string, accel: Accel, memBytes = 64 << 20, appArgs: string[] = []): RunOptions {
  return { image, accel, memBytes, cpus: 1, ports: [], appArgs, seedFile: benchSeed() };
}

export interface Launch {
  /** ms from spawn to the first stdout chunk containing `marker` (NaN if never seen) */
  markerMs: number;
  /** ms from spawn to process exit */
  exitMs: number;
  stdout: string;
  /** the guest's exit code (QEMU's (v << 1) | 1 translated back), or -1 */
  guestCode: number;
}

/** Launches QEMU directly (no CLI in between) and times the marker and the exit. */
export function launch(o: RunOptions, marker: string, timeoutMs = 60_000): Promise<Launch> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const elapsed = () => Number(process.hrtime.bigint() - start) / 1e6;
    const child = spawn(QEMU_BINARY, qemuArgs(o), { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let markerMs = NaN;
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      stdout += chunk;
      if (Number.isNaN(markerMs) && stdout.includes(marker)) markerMs = elapsed();
    });
    child.stderr.resume();
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (status) => {
      clearTimeout(timer);
      const guestCode = status !== null && (status & 1) === 1 ? status >> 1 : -1;
      resolve({ markerMs, exitMs: elapsed(), stdout, guestCode });
    });
  });
}

export function table(header: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number>>): string {
  const line = (cells: ReadonlyArray<string | number>) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

export const fmt = (ms: number, digits = 1) => (Number.isFinite(ms) ? ms.toFixed(digits) : "n/a");

/** What wrk reported: requests/s, latency percentiles, and socket errors plus non-2xx/3xx answers. */
export interface WrkResult {
  rps: number;
  p50: string;
  p99: string;
  requests: number;
  errors: number;
}

/** Parses wrk's `--latency` report. */
export function parseWrk(out: string): WrkResult {
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const errors = (socketErrors ? socketErrors.slice(1).reduce((a, b) => a + Number(b), 0) : 0) + (non2xx ? Number(non2xx[1]) : 0);
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN),
    // anchored: the thread-stats rows end in percentages too ("… 62.50%"), one line before "Latency Distribution"
    p50: /^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? "n/a",
    p99: /^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? "n/a",
    requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? 0),
    errors,
  };
}

/**
 * When `meta` is the entry script (`node --import tsx bench/NAME.ts`), runs `section` alone in a
 * scratch directory and prints its markdown (`npm run bench -- NAME` also writes BENCHMARKS.md).
 */
export async function runIfMain(meta: ImportMeta, section: (work: string) => Promise<string>): Promise<void> {
  if (process.argv[1] !== meta.filename) return;
  const work = mkdtempSync(join(tmpdir(), "torito-bench-"));
  try {
    console.log(await section(work));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
