/**
 * ext2 benchmark (issue 5): sequential write and read MB/s of a 16 MiB file and the
 * small-file create+stat rate, by the guest (test/fixtures/apps/ext2-disk.ts, "bench") on an
 * ext2 image over virtio-blk; baselines in the same run: the same operations by Node on a
 * host file (Linux's file system and page cache), and by the same ext2 driver on Node over
 * an in-memory disk (the driver's own cost, JIT-compiled).
 */
import { execFileSync } from "node:child_process";
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { buildImage } from "../host/build.ts";
import { kvmUsable, type Accel } from "../host/run.ts";
import { mountExt2 } from "../kernel/fs/ext2/ext2.ts";
import type { Ext2BlockDevice } from "../kernel/fs/ext2/cache.ts";
import type { OpenFlags } from "../kernel/fs/types.ts";
import { launch, median, runOptions, table } from "./lib.ts";

const RUNS = 3;
const FILE_MIB = 16;
const SMALL_FILES = 200;
const IMAGE_MIB = 64;

interface Figures {
  writeMBps: number;
  readMBps: number;
  createStatPerS: number;
}

const fmt = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : "n/a");

function makeImage(path: string): void {
  execFileSync("dd", ["if=/dev/zero", `of=${path}`, "bs=1M", `count=${IMAGE_MIB}`], { stdio: "ignore" });
  execFileSync("mke2fs", ["-q", "-F", "-t", "ext2", "-b", "4096", path], { stdio: "ignore" });
}

/** The same operations with Node's fs on a host directory (fsync where the guest syncs). */
function hostFigures(dir: string): Figures {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const chunk = Buffer.alloc(1 << 20, 7);
  const file = join(dir, "seq.bin");
  let t = performance.now();
  let fd = openSync(file, "w");
  for (let i = 0; i < FILE_MIB; i++) writeSync(fd, chunk, 0, chunk.length, i << 20);
  fsyncSync(fd);
  closeSync(fd);
  const writeMs = performance.now() - t;
  t = performance.now();
  fd = openSync(file, "r");
  for (let at = 0; at < FILE_MIB << 20;) at += readSync(fd, chunk, 0, chunk.length, at);
  closeSync(fd);
  const readMs = performance.now() - t;
  mkdirSync(join(dir, "many"));
  t = performance.now();
  for (let i = 0; i < SMALL_FILES; i++) {
    const f = openSync(join(dir, `many/f${i}`), "w");
    writeSync(f, "x");
    closeSync(f);
    statSync(join(dir, `many/f${i}`));
  }
  const d = openSync(join(dir, "many"), "r");
  fsyncSync(d);
  closeSync(d);
  const smallMs = performance.now() - t;
  return { writeMBps: FILE_MIB / (writeMs / 1000), readMBps: FILE_MIB / (readMs / 1000), createStatPerS: SMALL_FILES / (smallMs / 1000) };
}

/** The guest's operations with the same ext2 driver on Node over an in-memory disk. */
async function driverOnNode(imagePath: string): Promise<Figures> {
  const image = readFileSync(imagePath);
  const disk: Ext2BlockDevice = {
    capacity: image.length / 512,
    readOnly: false,
    read: async (sector, into) => {
      const buffer = typeof into === "number" ? new Uint8Array(into * 512) : into;
      buffer.set(image.subarray(sector * 512, sector * 512 + buffer.length));
      return buffer;
    },
    write: async (sector, data) => void image.set(data, sector * 512),
    flush: async () => undefined,
  };
  const create: OpenFlags = { read: true, write: true, append: false, create: true, exclusive: false, truncate: true };
  const read: OpenFlags = { read: true, write: false, append: false, create: false, exclusive: false, truncate: false };
  const fs = await mountExt2(disk, { log: () => undefined });
  const chunk = new Uint8Array(1 << 20).fill(7);
  let t = performance.now();
  const h = await fs.open("seq.bin", create, 0o644);
  for (let i = 0; i < FILE_MIB; i++) await h.write(chunk, 0, chunk.length, i << 20);
  await h.sync();
  await h.close();
  const writeMs = performance.now() - t;
  const cold = await mountExt2(disk, { log: () => undefined });
  t = performance.now();
  const r = await cold.open("seq.bin", read, 0);
  for (let at = 0; at < FILE_MIB << 20;) at += await r.read(chunk, 0, chunk.length, at);
  await r.close();
  const readMs = performance.now() - t;
  await cold.mkdir("many", 0o755);
  t = performance.now();
  for (let i = 0; i < SMALL_FILES; i++) {
    const f = await cold.open(`many/f${i}`, create, 0o644);
    await f.write(chunk, 0, 1, 0);
    await f.close();
    await cold.stat(`many/f${i}`);
  }
  await cold.syncAll();
  const smallMs = performance.now() - t;
  return { writeMBps: FILE_MIB / (writeMs / 1000), readMBps: FILE_MIB / (readMs / 1000), createStatPerS: SMALL_FILES / (smallMs / 1000) };
}

function medians(list: Figures[]): Figures {
  return {
    writeMBps: median(list.map((f) => f.writeMBps)),
    readMBps: median(list.map((f) => f.readMBps)),
    createStatPerS: median(list.map((f) => f.createStatPerS)),
  };
}

/** Runs the benchmark and returns its markdown section for BENCHMARKS.md. */
export async function ext2Benchmark(work: string): Promise<string> {
  const elf = join(work, "ext2-disk.elf");
  await buildImage({ entry: join(import.meta.dirname, "../test/fixtures/apps/ext2-disk.ts"), output: elf });
  const disk = join(work, "ext2-bench.img");
  const accels: Accel[] = kvmUsable().ok ? ["kvm", "tcg"] : ["tcg"];
  const rows: (string | number)[][] = [];
  const host: Figures[] = [];
  const node: Figures[] = [];
  for (const accel of accels) {
    const guest: Figures[] = [];
    for (let i = 0; i < RUNS; i++) {
      makeImage(disk);
      node.push(await driverOnNode(disk));
      host.push(hostFigures(join(work, "ext2-host")));
      makeImage(disk);
      const r = await launch({ ...runOptions(elf, accel, 128 << 20, ["bench"]), disks: [{ path: disk, readOnly: false }] }, "{", 300_000);
      if (r.guestCode !== 0) throw new Error(`ext2 benchmark failed under ${accel}: ${r.stdout}`);
      guest.push(JSON.parse(r.stdout.slice(r.stdout.indexOf("{"), r.stdout.lastIndexOf("}") + 1)) as Figures);
    }
    const g = medians(guest);
    rows.push([`guest ext2, ${accel}`, fmt(g.writeMBps), fmt(g.readMBps), fmt(g.createStatPerS, 0)]);
    console.log(`ext2 ${accel}: write ${fmt(g.writeMBps)} MB/s, read ${fmt(g.readMBps)} MB/s, create+stat ${fmt(g.createStatPerS, 0)}/s`);
  }
  const n = medians(node);
  const h = medians(host);
  rows.push(["same driver on Node, in-memory disk", fmt(n.writeMBps), fmt(n.readMBps), fmt(n.createStatPerS, 0)]);
  rows.push(["host Linux, Node fs (baseline)", fmt(h.writeMBps), fmt(h.readMBps), fmt(h.createStatPerS, 0)]);
  rmSync(join(work, "ext2-host"), { recursive: true, force: true });
  return [
    "## ext2 on virtio-blk (issue 5)",
    "",
    `Medians of ${RUNS} runs per row. Guest: \`test/fixtures/apps/ext2-disk.ts bench\` on a fresh ${IMAGE_MIB} MiB`,
    "`mke2fs -t ext2 -b 4096` image (raw, QEMU's default writeback cache), 128 MiB guest: a",
    `${FILE_MIB} MiB file written in 1 MiB writes then synced (write-back cache, data then metadata, flushes);`,
    "read back in 1 MiB reads through a fresh mount (cold block cache, read-ahead of contiguous runs);",
    `${SMALL_FILES} one-byte files created, each stat()ed, then one sync. Baselines in the same run: the same`,
    "driver on Node over an in-memory disk (its CPU cost, JIT-compiled), and the same operations with",
    "Node's `fs` on a host directory (Linux; `fsync` where the guest syncs; the read is from the page cache).",
    "",
    table(["", "seq write (MB/s)", "seq read (MB/s)", "create+stat (files/s)"], rows),
    "",
  ].join("\n");
}
