/**
 * The read-only file system of files packed into the image (`torito build --files DIR`).
 * Reads are zero-copy views over the image's memory. Malformed blobs are rejected at
 * mount with a clear error, never half-used.
 */
import { TextDecoder } from "../encoding.ts";
import type { FileHandleOps, FileSystem, FsStat, OpenFlags } from "./types.ts";
import { IMAGE_FS_MAGIC, IMAGE_FS_VERSION, type ImageFsEntry, type ImageFsIndex } from "./image-format.ts";

/** A file-system error with a Node error code: "ENOENT: no such file or directory, open '/x'". */
export class FsError extends Error {
  constructor(readonly code: string, readonly detail: string, readonly path?: string) {
    super(`${code}: ${detail}${path !== undefined ? ` '${path}'` : ""}`);
  }
}

/** @deprecated kept for the image reader's synchronous API; the VFS uses FsStat. */
export type ImageStat = FsStat;

/** Normalises a path inside the mount: resolves "." and "..", never above the root. */
export function normalizePath(path: string): string {
  // already normal (no empty, "." or ".." part): the common case, without splitting
  if (path !== "" && path.charCodeAt(0) !== 47 && path.charCodeAt(0) !== 46 && path.charCodeAt(path.length - 1) !== 47 &&
      !path.includes("//") && !path.includes("/.")) return path;
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return out.join("/");
}

export class ImageFs implements FileSystem {
  readonly readOnly = true;
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

  /** Answers of statSync by the path asked (the image never changes); bounded. */
  readonly #stats = new Map<string, FsStat>();

  statSync(path: string): FsStat {
    const known = this.#stats.get(path);
    if (known !== undefined) return known;
    const stat = this.#statUncached(path);
    if (this.#stats.size >= 1024) this.#stats.clear();
    this.#stats.set(path, stat);
    return stat;
  }

  #statUncached(path: string): FsStat {
    const p = normalizePath(path);
    const e = this.#entries.get(p);
    if (!e && p !== "") throw new FsError("ENOENT", "no such file or directory", path);
    const isDir = !e || e.kind === "dir";
    return {
      size: e?.size ?? 0, mtimeMs: e?.mtimeMs ?? 0, mode: isDir ? 0o40555 : 0o100444, ino: 0,
      isFile: () => !isDir, isDirectory: () => isDir,
    };
  }

  /** The file's bytes: a view into the image (do not modify). */
  readFileSync(path: string): Uint8Array {
    const p = normalizePath(path);
    const e = this.#entries.get(p);
    if (!e) {
      if (this.#children.has(p)) throw new FsError("EISDIR", "illegal operation on a directory", path);
      throw new FsError("ENOENT", "no such file or directory", path);
    }
    if (e.kind === "dir") throw new FsError("EISDIR", "illegal operation on a directory", path);
    return this.#bytes.subarray(e.offset, e.offset + e.size);
  }

  readdirSync(path: string): string[] {
    const p = normalizePath(path);
    const list = this.#children.get(p);
    if (!list) {
      if (this.#entries.has(p)) throw new FsError("ENOTDIR", "not a directory", path);
      throw new FsError("ENOENT", "no such file or directory", path);
    }
    return list.slice().sort();
  }

  // ---- FileSystem ------------------------------------------------------------------
  async stat(path: string): Promise<FsStat> { return this.statSync(path); }
  async readdir(path: string): Promise<string[]> { return this.readdirSync(path); }
  async readFileDirect(path: string): Promise<Uint8Array> { return this.readFileSync(path); }

  async open(path: string, flags: OpenFlags): Promise<FileHandleOps> {
    if (flags.write || flags.truncate || flags.append) throw new FsError("EROFS", "read-only file system");
    const bytes = this.readFileSync(path);
    const stat = this.statSync(path);
    return {
      read: async (buffer, offset, length, position) => {
        const n = Math.max(0, Math.min(length, bytes.length - position));
        buffer.set(bytes.subarray(position, position + n), offset);
        return n;
      },
      write: async () => { throw new FsError("EROFS", "read-only file system"); },
      stat: async () => stat,
      truncate: async () => { throw new FsError("EROFS", "read-only file system"); },
      sync: async () => undefined,
      close: async () => undefined,
    };
  }

  async mkdir(): Promise<void> { throw new FsError("EROFS", "read-only file system"); }
  async unlink(): Promise<void> { throw new FsError("EROFS", "read-only file system"); }
  async rmdir(): Promise<void> { throw new FsError("EROFS", "read-only file system"); }
  async rename(): Promise<void> { throw new FsError("EROFS", "read-only file system"); }
  async syncAll(): Promise<void> {}
}
