// Host-side helpers of the ext2 tests: an in-memory block device over an image file's
// bytes, images made by mke2fs, and e2fsprogs checks (e2fsck -fn, debugfs dump).
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Ext2BlockDevice } from "../../kernel/fs/ext2/ext2.ts";
import type { OpenFlags } from "../../kernel/fs/types.ts";
import { pattern as sharedPattern } from "../fixtures/pattern.ts";

/** A block device backed by a Buffer, with the blk handle's interface and checks. */
export class MemoryDisk implements Ext2BlockDevice {
  readonly capacity: number;
  writes = 0;
  flushes = 0;
  /** When set, writes after this many throw (a dying disk). */
  failWritesAfter = Infinity;

  constructor(readonly image: Buffer, readonly readOnly = false) {
    this.capacity = image.length / 512;
  }

  async read(sector: number, countOrInto: number | Uint8Array): Promise<Uint8Array> {
    const into = typeof countOrInto === "number" ? new Uint8Array(countOrInto * 512) : countOrInto;
    if (into.length % 512 !== 0 || sector < 0 || sector * 512 + into.length > this.image.length) {
      throw new RangeError(`memory disk: read of ${into.length} bytes at sector ${sector} is out of range`);
    }
    into.set(this.image.subarray(sector * 512, sector * 512 + into.length));
    return into;
  }

  async write(sector: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) throw new Error("memory disk: read-only");
    if (data.length % 512 !== 0 || sector < 0 || sector * 512 + data.length > this.image.length) {
      throw new RangeError(`memory disk: write of ${data.length} bytes at sector ${sector} is out of range`);
    }
    if (this.writes >= this.failWritesAfter) throw new Error("memory disk: I/O error (injected)");
    this.writes++;
    this.image.set(data, sector * 512);
  }

  async flush(): Promise<void> {
    this.flushes++;
  }
}

/** A scratch directory removed by cleanup(). */
export function scratch(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `torito-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Writes `files` (path → contents) under `root`, creating directories. */
export function populate(root: string, files: Record<string, string | Buffer>): void {
  mkdirSync(root, { recursive: true });
  for (const [path, contents] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), contents);
  }
}

/** Makes an image file with `mke2fs -t TYPE -d DIR` and returns its path. */
export function makeImage(path: string, options: { sizeKiB: number; blockSize?: number; from?: string; type?: string; extra?: string[] }): string {
  execFileSync("dd", ["if=/dev/zero", `of=${path}`, "bs=1024", `count=${options.sizeKiB}`], { stdio: "ignore" });
  const args = ["-q", "-F", "-t", options.type ?? "ext2", "-b", String(options.blockSize ?? 1024), ...(options.extra ?? [])];
  if (options.from !== undefined) args.push("-d", options.from);
  execFileSync("mke2fs", [...args, path], { stdio: "pipe", env: { ...process.env, E2FSPROGS_FAKE_TIME: "" } });
  return path;
}

/** `e2fsck -fn IMAGE`: ok when it exits 0 (nothing to fix). */
export function fsck(path: string): { ok: boolean; output: string } {
  const r = spawnSync("e2fsck", ["-fn", path], { encoding: "utf8" });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
}

/** The file's bytes as debugfs reads them from the image (null when it cannot). */
export function dump(image: string, path: string, work: string): Buffer | null {
  const out = join(work, `dump-${Math.random().toString(36).slice(2)}`);
  spawnSync("debugfs", ["-R", `dump -p "/${path}" ${out}`, image], { encoding: "utf8" });
  try {
    const data = readFileSync(out);
    rmSync(out);
    return data;
  } catch {
    return null;
  }
}

/** debugfs `ls -l` of a directory (names only). */
export function listNames(image: string, path: string): string[] {
  const r = spawnSync("debugfs", ["-R", `ls -p "/${path}"`, image], { encoding: "utf8" });
  // -p prints /ino/mode/uid/gid/name/size/ lines.
  return r.stdout.split("\n").filter((l) => l.startsWith("/")).map((l) => l.split("/")[5]!).filter((n) => n !== "." && n !== "..");
}

/** Deterministic bytes for file `seed` (the guest's test/fixtures/apps/ext2-disk.ts makes the same). */
export function pattern(seed: number, length: number): Buffer {
  const bytes = sharedPattern(seed, length);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

export const READ: OpenFlags = { read: true, write: false, append: false, create: false, exclusive: false, truncate: false };
export const WRITE: OpenFlags = { read: true, write: true, append: false, create: true, exclusive: false, truncate: true };
export const UPDATE: OpenFlags = { read: true, write: true, append: false, create: false, exclusive: false, truncate: false };
export const APPEND: OpenFlags = { read: true, write: false, append: true, create: true, exclusive: false, truncate: false };
