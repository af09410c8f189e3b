/**
 * virtio-fs benchmark (issue 5): sequential read and write of a 32 MiB file and small-file
 * create and stat rates, from a guest app (test/fixtures/apps/virtiofs-bench.ts) on a share
 * served by QEMU's virtiofsd (`torito run --fs`), against the same operations done by Node on
 * the host in the same directory in the same run.
 */
import { spawnSync } from "node:child_process";
import { closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { buildImage } from "../host/build.ts";
import { kvmUsable, type Accel } from "../host/run.ts";
import { median, table } from "./lib.ts";

const RUNS = 3;
const FILE_MIB = 32;
const CHUNK_MIB = 4;
const SMALL_FILES = 200;

interface Result {
  seqReadMBs: number;
  seqWriteMBs: number;
  createPerSec: number;
  statPerSec: number;
}

/** The same work as the guest app, by Node on the host (synchronous calls, like the guest's one-at-a-time loop). */
function hostRun(dir: string): Result {
  const buffer = Buffer.alloc(CHUNK_MIB << 20, 0x5a);
  const bytes = FILE_MIB << 20;
  const file = join(dir, "seq.bin");
  let t0 = performance.now();
  let fd = openSync(file, "w", 0o644);
  for (let at = 0; at < bytes; at += buffer.length) writeSync(fd, buffer, 0, buffer.length, at);
  fsyncSync(fd);
  closeSync(fd);
  const seqWriteMBs = bytes / 1e6 / ((performance.now() - t0) / 1000);
  t0 = performance.now();
  fd = openSync(file, "r");
  for (let at = 0; at < bytes; at += buffer.length) readSync(fd, buffer, 0, buffer.length, at);
  closeSync(fd);
  const seqReadMBs = bytes / 1e6 / ((performance.now() - t0) / 1000);
  mkdirSync(join(dir, "small"));
  t0 = performance.now();
  for (let i = 0; i < SMALL_FILES; i++) closeSync(openSync(join(dir, `small/f${i}`), "wx", 0o644));
  const createPerSec = SMALL_FILES / ((performance.now() - t0) / 1000);
  t0 = performance.now();
  for (let i = 0; i < SMALL_FILES; i++) statSync(join(dir, `small/f${i}`));
  const statPerSec = SMALL_FILES / ((performance.now() - t0) / 1000);
  return { seqReadMBs, seqWriteMBs, createPerSec, statPerSec };
}

function guestRun(image: string, dir: string, accel: Accel): Result {
  const cli = join(import.meta.dirname, "../bin/torito.js");
  const r = spawnSync(process.execPath, [cli, "run", image, "--accel", accel, "--mem", "128M", "--timeout", "300", "--fs", dir, "--",
    String(FILE_MIB), String(CHUNK_MIB), String(SMALL_FILES)], { encoding: "utf8", timeout: 320_000 });
  const line = r.stdout.split("\n").find((l) => l.startsWith("{"));
  if (r.status !== 0 || line === undefined) throw new Error(`virtio-fs benchmark failed under ${accel} (exit ${r.status}): ${r.stdout}${r.stderr}`);
  return JSON.parse(line) as Result;
}

/** Runs the benchmark and returns its markdown section for BENCHMARKS.md. */
export async function virtiofsBenchmark(work: string): Promise<string> {
  const image = join(work, "virtiofs-bench.elf");
  await buildImage({ entry: join(import.meta.dirname, "../test/fixtures/apps/virtiofs-bench.ts"), output: image });
  const accels: Accel[] = kvmUsable().ok ? ["kvm", "tcg"] : ["tcg"];
  const fmt = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : "n/a");
  const row = (name: string, results: Result[], notes: string) => [name,
    fmt(median(results.map((x) => x.seqReadMBs))), fmt(median(results.map((x) => x.seqWriteMBs))),
    fmt(median(results.map((x) => x.createPerSec))), fmt(median(results.map((x) => x.statPerSec))), notes];
  const rows: (string | number)[][] = [];
  const host: Result[] = [];
  for (const accel of accels) {
    const guest: Result[] = [];
    for (let i = 0; i < RUNS; i++) {
      const hostDir = mkdtempSync(join(work, "virtiofs-host-"));
      host.push(hostRun(hostDir));
      rmSync(hostDir, { recursive: true, force: true });
      const share = mkdtempSync(join(work, "virtiofs-share-"));
      guest.push(guestRun(image, share, accel));
      rmSync(share, { recursive: true, force: true });
    }
    rows.push(row(accel, guest, "guest app through virtiofsd"));
    console.log(`virtio-fs ${accel}: read ${fmt(median(guest.map((x) => x.seqReadMBs)))} MB/s, write ${fmt(median(guest.map((x) => x.seqWriteMBs)))} MB/s, create ${fmt(median(guest.map((x) => x.createPerSec)))}/s, stat ${fmt(median(guest.map((x) => x.statPerSec)))}/s`);
  }
  rows.push(row("host (baseline)", host, "Node sync fs calls, same kind of directory"));
  return [
    "## Filesystem: virtio-fs (issue 5)",
    "",
    `Medians of ${RUNS} runs. Guest: \`test/fixtures/apps/virtiofs-bench.ts\` on a \`torito run --fs\` share`,
    `(QEMU's virtiofsd 7.2, \`cache=auto\`, modern virtio-mmio): a ${FILE_MIB} MiB file written then read in`,
    `${CHUNK_MIB} MiB \`write()\`/\`read()\` calls (each split into 1 MiB FUSE requests, all in flight; the write`,
    `ends with FSYNC), then ${SMALL_FILES} empty files created (CREATE + RELEASE each) and stat'ed one at a time`,
    "(the stats are served from the node cache within virtiofsd's 1 s attribute timeout, as Linux does).",
    `Baseline: the same operations by Node's synchronous fs calls on the host in the same run (page cache).`,
    "",
    table(["", "seq read (MB/s)", "seq write (MB/s)", "create (files/s)", "stat (files/s)", "notes"], rows),
    "",
  ].join("\n");
}
