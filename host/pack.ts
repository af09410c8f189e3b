/** Packs a directory into the image file-system blob (kernel/fs/image-format.ts). */
import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { IMAGE_FS_MAGIC, IMAGE_FS_VERSION, type ImageFsEntry } from "../kernel/fs/image-format.ts";
import { UsageError } from "./run.ts";

/** Walks `dir` (symlinks are refused: the image must not depend on the host's layout). */
export function packDirectory(dir: string): Uint8Array {
  let root;
  try {
    root = lstatSync(dir);
  } catch {
    throw new UsageError(`--files: no such directory: ${dir}`);
  }
  if (!root.isDirectory()) throw new UsageError(`--files: not a directory: ${dir}`);
  const entries: ImageFsEntry[] = [];
  const contents: Buffer[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(dir, path));
      if (st.isSymbolicLink()) throw new UsageError(`--files: symbolic links are not packed: ${join(dir, path)}`);
      if (st.isDirectory()) {
        entries.push({ path, kind: "dir", offset: 0, size: 0, mtimeMs: Math.floor(st.mtimeMs) });
        walk(path);
      } else if (st.isFile()) {
        entries.push({ path, kind: "file", offset: 0, size: st.size, mtimeMs: Math.floor(st.mtimeMs) });
        contents.push(readFileSync(join(dir, path)));
      }
    }
  };
  walk("");
  // The index holds the offsets, which depend on the index's length: iterate to a fixpoint.
  let indexBytes = Buffer.alloc(0);
  for (let round = 0; round < 4; round++) {
    let offset = align16(12 + indexBytes.length);
    let i = 0;
    for (const e of entries) {
      if (e.kind !== "file") continue;
      e.offset = offset;
      offset = align16(offset + contents[i++]!.length);
    }
    const next = Buffer.from(JSON.stringify({ entries }));
    const settled = next.length === indexBytes.length;
    indexBytes = next;
    if (settled) break;
  }
  const total = entries.reduce((end, e) => (e.kind === "file" ? Math.max(end, e.offset + e.size) : end), align16(12 + indexBytes.length));
  const blob = Buffer.alloc(total);
  blob.writeUInt32LE(IMAGE_FS_MAGIC, 0);
  blob.writeUInt32LE(IMAGE_FS_VERSION, 4);
  blob.writeUInt32LE(indexBytes.length, 8);
  indexBytes.copy(blob, 12);
  let i = 0;
  for (const e of entries) if (e.kind === "file") contents[i++]!.copy(blob, e.offset);
  return new Uint8Array(blob.buffer, blob.byteOffset, blob.length);
}

const align16 = (n: number) => (n + 15) & ~15;
