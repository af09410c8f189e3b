/**
 * Devices benchmark (issue 3): virtio-blk sequential MB/s and 4 KiB random-read IOPS from a
 * guest app (test/fixtures/apps/devices-bench.ts) on a raw image in the host page cache,
 * against the same file read and written on the host in the same run (`dd` for sequential,
 * a Node pread loop for random 4 KiB reads).
 */
import { spawnSync } from "node:child_process";
import { closeSync, openSync, readSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildImage } from "../host/build.ts";
import { kvmUsable, type Accel } from "../host/run.ts";
import { launch, median, runOptions, table } from "./lib.ts";

const RUNS = 3;
const DISK_MIB = 64;
const SEQ_MIB = 32;
const CHUNK_KIB = 128;
const DEPTH = 4;
const RANDOM_READS = 4000;
const RANDOM_DEPTH = 32;

interface GuestResult {
  seqReadMBs: number;
  seqWriteMBs: number;
  randomIops: number;
  stats: { halts: number; interrupts: number; notifications: number };
}

/** Runs dd and parses its summary line (on stderr): "N bytes ... copied, S s, ...". */
function dd(args: string[]): number {
  const r = spawnSync("dd", args, { encoding: "utf8" });
  const m = /(\d+) bytes .* copied, ([\d.]+) s/.exec(r.stderr);
  return m ? Number(m[1]) / 1e6 / Number(m[2]) : NaN;
}

function hostRandomIops(file: string): number {
  const fd = openSync(file, "r");
  const buf = Buffer.alloc(4096);
  const blocks = (DISK_MIB << 20) / 4096;
  let seed = 12345;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < RANDOM_READS; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    readSync(fd, buf, 0, 4096, (seed % blocks) * 4096);
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  closeSync(fd);
  return RANDOM_READS / s;
}

/** Runs the benchmark and returns its markdown section for BENCHMARKS.md. */
export async function devicesBenchmark(work: string): Promise<string> {
  const image = join(work, "devices-bench.elf");
  await buildImage({ entry: join(import.meta.dirname, "../test/fixtures/apps/devices-bench.ts"), output: image });
  const disk = join(work, "devices-bench.img");
  writeFileSync(disk, Buffer.alloc(DISK_MIB << 20, 1));
  const accels: Accel[] = kvmUsable().ok ? ["kvm", "tcg"] : ["tcg"];
  const rows: (string | number)[][] = [];
  const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : "n/a");

  const hostRead: number[] = [], hostWrite: number[] = [], hostIops: number[] = [];
  for (const accel of accels) {
    const read: number[] = [], write: number[] = [], iops: number[] = [];
    let notes = "";
    for (let i = 0; i < RUNS; i++) {
      hostWrite.push(dd(["if=/dev/zero", `of=${disk}`, `bs=${CHUNK_KIB}k`, `count=${(SEQ_MIB << 10) / CHUNK_KIB}`, "conv=notrunc,fdatasync"]));
      hostRead.push(dd([`if=${disk}`, "of=/dev/null", `bs=${CHUNK_KIB}k`, `count=${(SEQ_MIB << 10) / CHUNK_KIB}`]));
      hostIops.push(hostRandomIops(disk));
      const o = { ...runOptions(image, accel, 128 << 20, [String(SEQ_MIB), String(CHUNK_KIB), String(DEPTH), String(RANDOM_READS), String(RANDOM_DEPTH)]), disks: [{ path: disk, readOnly: false }] };
      const r = await launch(o, "{", 300_000);
      if (r.guestCode !== 0) throw new Error(`devices benchmark failed under ${accel}: ${r.stdout}`);
      const g = JSON.parse(r.stdout.slice(r.stdout.indexOf("{"))) as GuestResult;
      read.push(g.seqReadMBs);
      write.push(g.seqWriteMBs);
      iops.push(g.randomIops);
      notes = `${g.stats.notifications} notifications, ${g.stats.halts} halts`;
    }
    rows.push([accel, fmt(median(read)), fmt(median(write)), fmt(median(iops)), notes]);
    console.log(`devices ${accel}: seq read ${fmt(median(read))} MB/s, seq write ${fmt(median(write))} MB/s, random ${fmt(median(iops))} IOPS`);
  }
  rows.push(["host (baseline)", fmt(median(hostRead)), fmt(median(hostWrite)), fmt(median(hostIops)), "dd / Node pread, same file"]);
  return [
    "## Devices: virtio-blk (issue 3)",
    "",
    `Medians of ${RUNS} runs. Guest: \`test/fixtures/apps/devices-bench.ts\` on a ${DISK_MIB} MiB raw image`,
    `(QEMU \`-drive format=raw\`, default writeback cache, legacy virtio-mmio): sequential ${SEQ_MIB} MiB in`,
    `${CHUNK_KIB} KiB requests, ${DEPTH} in flight (write ends with a flush); ${RANDOM_READS} random 4 KiB reads,`,
    `${RANDOM_DEPTH} in flight. Baseline: the same file on the host in the same run — \`dd bs=${CHUNK_KIB}k\``,
    "(write with `conv=fdatasync`) and a synchronous Node `readSync` loop of random 4 KiB reads (page cache).",
    "",
    table(["", "seq read (MB/s)", "seq write (MB/s)", "4 KiB random read (IOPS)", "notes"], rows),
    "",
  ].join("\n");
}
