/**
 * The read-only file system of files packed into the image (`torito build --files DIR`).
 * Reads are zero-copy views over the image's memory. Malformed blobs are rejected at
 * mount with a clear error, never half-used.
 */
import { TextDecoder } from "../encoding.ts";
import { IMAGE_FS_MAGIC, IMAGE_FS_VERSION, type ImageFsEntry, type ImageFsIndex } from "./image-format.ts";

export class FsError extends Error {
  constructor(readonly code: string, message: string, readonly path?: string) {
    super(`${code}: ${message}${path !== undefined ? `, '${path}'` : ""}`);
  }
}

export interface ImageStat {
  size: number;
  mtimeMs: number;
  isFile(): boolean;
  isDirectory(): boolean;
}

/** Normalises a path inside the mount: resolves "." and "..", never above the root. */
export function normalizePath(path: string): string {
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return out.join("/");
}

export class ImageFs {
  #bytes: Uint8Array;
  #entries = new Map<string, ImageFsEntry>();
  #children = new Map<string, string[]>();

  constructor(blob: ArrayBuffer) {
    this.#bytes = new Uint8Array(blob);
    const view = new DataView(blob);
    if (blob.byteLength < 12 || view.getUint32(0, true) !== IMAGE_FS_MAGIC) throw new FsError("EINVAL", "packed files: bad magic");
    if (view.getUint32(4, true) !== IMAGE_FS_VERSION) throw new FsError("EINVAL", `packed files: unsupported version ${view.getUint32(4, true)}`);
    const indexLength = view.getUint32(8, true);
    if (12 + indexLength > blob.byteLength) throw new FsError("EINVAL", "packed files: index runs past the end");
    let index: ImageFsIndex;
    try {
      index = JSON.parse(new TextDecoder().decode(this.#bytes.subarray(12, 12 + indexLength))) as ImageFsIndex;
    } catch {
      throw new FsError("EINVAL", "packed files: unreadable index");
    }
    this.#children.set("", []);
    for (const e of index.entries) {
      if (normalizePath(e.path) !== e.path || e.path === "") throw new FsError("EINVAL", "packed files: bad path", e.path);
      if (e.kind === "file" && (e.offset < 12 + indexLength || e.offset + e.size > blob.byteLength)) {
        throw new FsError("EINVAL", "packed files: contents outside the blob", e.path);
      }
      this.#entries.set(e.path, e);
      if (e.kind === "dir" && !this.#children.has(e.path)) this.#children.set(e.path, []);
    }
    for (const path of this.#entries.keys()) {
      const slash = path.lastIndexOf("/");
      const parent = slash < 0 ? "" : path.slice(0, slash);
      const list = this.#children.get(parent);
      if (!list) throw new FsError("EINVAL", "packed files: entry without its directory", path);
      list.push(path.slice(slash + 1));
    }
  }

  stat(path: string): ImageStat {
    const p = normalizePath(path);
    const e = this.#entries.get(p);
    if (!e && p !== "") throw new FsError("ENOENT", "no such file or directory", path);
    const isDir = !e || e.kind === "dir";
    return { size: e?.size ?? 0, mtimeMs: e?.mtimeMs ?? 0, isFile: () => !isDir, isDirectory: () => isDir };
  }

  /** The file's bytes: a view into the image (do not modify). */
  readFile(path: string): Uint8Array {
    const p = normalizePath(path);
    const e = this.#entries.get(p);
    if (!e) {
      if (this.#children.has(p)) throw new FsError("EISDIR", "illegal operation on a directory", path);
      throw new FsError("ENOENT", "no such file or directory", path);
    }
    if (e.kind === "dir") throw new FsError("EISDIR", "illegal operation on a directory", path);
    return this.#bytes.subarray(e.offset, e.offset + e.size);
  }

  readdir(path: string): string[] {
    const p = normalizePath(path);
    const list = this.#children.get(p);
    if (!list) {
      if (this.#entries.has(p)) throw new FsError("ENOTDIR", "not a directory", path);
      throw new FsError("ENOENT", "no such file or directory", path);
    }
    return list.slice().sort();
  }
}
