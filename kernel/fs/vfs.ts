/**
 * The VFS: a mount table and path resolution in front of the file systems, with an async
 * API shaped like `node:fs/promises`. Paths are absolute; "." and ".." are resolved
 * lexically and never climb out of a mount. Errors carry Node's codes (ENOENT, EISDIR, …).
 *
 * Mounts by convention: /app holds the files packed into the image (read-only).
 * virtio-fs (/share) and ext2 (/disk) mount here as their drivers land.
 */
import { TextDecoder } from "../encoding.ts";
import { FsError, normalizePath, type ImageStat } from "./imagefs.ts";

/** What a mounted file system provides (read-only for now). */
export interface FileSystem {
  stat(path: string): ImageStat | Promise<ImageStat>;
  readFile(path: string): Uint8Array | Promise<Uint8Array>;
  readdir(path: string): string[] | Promise<string[]>;
}

export interface Stats {
  size: number;
  mtimeMs: number;
  mtime: Date;
  isFile(): boolean;
  isDirectory(): boolean;
}

const mounts = new Map<string, FileSystem>();
let lazyMounts: (() => void) | null = null;

/** Mounts `fs` at `/name` (one path component). */
export function mount(point: string, fs: FileSystem): void {
  const name = normalizePath(point);
  if (name === "" || name.includes("/")) throw new FsError("EINVAL", "mount points are top-level directories", point);
  if (mounts.has(name)) throw new FsError("EBUSY", "already mounted", point);
  mounts.set(name, fs);
}

/** Runs `fn` before the first file-system access (mount discovery stays off the boot path). */
export function onFirstUse(fn: () => void): void {
  lazyMounts = fn;
}

function resolve(path: string): { fs: FileSystem; rel: string } | { root: true } {
  if (lazyMounts) {
    const f = lazyMounts;
    lazyMounts = null;
    f();
  }
  if (typeof path !== "string") throw new TypeError("path must be a string");
  if (path.includes("\0")) throw new FsError("EINVAL", "path contains a NUL byte", path);
  if (!path.startsWith("/")) throw new FsError("EINVAL", "paths must be absolute", path);
  const p = normalizePath(path);
  if (p === "") return { root: true };
  const slash = p.indexOf("/");
  const name = slash < 0 ? p : p.slice(0, slash);
  const fs = mounts.get(name);
  if (!fs) throw new FsError("ENOENT", "no such file or directory", path);
  return { fs, rel: slash < 0 ? "" : p.slice(slash + 1) };
}

function toStats(s: ImageStat): Stats {
  return { size: s.size, mtimeMs: s.mtimeMs, mtime: new Date(s.mtimeMs), isFile: s.isFile, isDirectory: s.isDirectory };
}

/** The file's contents (for image files: a read-only view, no copy). */
export async function readFile(path: string): Promise<Uint8Array>;
export async function readFile(path: string, encoding: "utf8" | "utf-8"): Promise<string>;
export async function readFile(path: string, encoding?: "utf8" | "utf-8"): Promise<Uint8Array | string> {
  const r = resolve(path);
  if ("root" in r) throw new FsError("EISDIR", "illegal operation on a directory", path);
  const bytes = await r.fs.readFile(r.rel);
  return encoding ? new TextDecoder().decode(bytes) : bytes;
}

export async function stat(path: string): Promise<Stats> {
  const r = resolve(path);
  if ("root" in r) return toStats({ size: 0, mtimeMs: 0, isFile: () => false, isDirectory: () => true });
  return toStats(await r.fs.stat(r.rel));
}

export async function readdir(path: string): Promise<string[]> {
  const r = resolve(path);
  if ("root" in r) return [...mounts.keys()].sort();
  return r.fs.readdir(r.rel);
}

export { FsError };
