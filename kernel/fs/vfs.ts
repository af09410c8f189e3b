/**
 * The VFS: a mount table, path resolution and file handles in front of the file systems
 * (kernel/fs/types.ts), with an API shaped like `node:fs/promises`. Paths are absolute;
 * "." and ".." are resolved lexically and never climb out of a mount (nor above "/").
 * Errors are FsError with Node's codes and messages ("ENOENT: no such file or directory,
 * open '/share/x'"). Data is Uint8Array; strings are UTF-8.
 *
 * Mounts by convention: /app (files packed into the image, read-only), /share
 * (virtio-fs, `torito run --fs DIR`), /disk (ext2 on the first virtio-blk disk).
 */
import { TextDecoder, TextEncoder } from "../encoding.ts";
import { FsError, ImageFs, normalizePath } from "./imagefs.ts";
import type { FileHandleOps, FileSystem, FsStat, OpenFlags } from "./types.ts";

/** Open file handles per core, at most. */
export const MAX_OPEN_FILES = 256;
/** readFile() refuses bigger files (stream them with open() and read() instead). */
export const MAX_READ_FILE_BYTES = 256 * 1024 * 1024;

const mounts = new Map<string, FileSystem>();
let pendingMounts: (() => Promise<void>) | null = null;
let mounting: Promise<void> | null = null;
let openFiles = 0;

/** Mounts `fs` at `/name` (one path component). */
export function mount(point: string, fs: FileSystem): void {
  const name = normalizePath(point);
  if (name === "" || name.includes("/")) throw new FsError("EINVAL", "mount points are top-level directories", point);
  if (mounts.has(name)) throw new FsError("EBUSY", "already mounted", point);
  mounts.set(name, fs);
  resolved.clear();
}

/** Runs `fn` before the first file-system access (mount discovery stays off the boot path). */
export function onFirstUse(fn: () => Promise<void>): void {
  pendingMounts = fn;
}

async function ready(): Promise<void> {
  if (pendingMounts) {
    const f = pendingMounts;
    pendingMounts = null;
    const started = f();
    mounting = started;
    // once mounted, operations resolve paths without waiting (a failure keeps being reported)
    started.then(() => { if (mounting === started) mounting = null; }, () => undefined);
  }
  if (mounting) await mounting;
}

interface Resolved {
  fs: FileSystem;
  rel: string;
  mount: string;
  /** The path's Stats once asked at once, where they cannot change (the image's files): see statsNow(). */
  stats: Stats | null;
}

async function resolve(path: string, syscall: string): Promise<Resolved | null> {
  await ready();
  return resolveNow(path, syscall);
}

/** Recent resolutions of good paths (a pure function of the path and the mount table). */
const resolved = new Map<string, Resolved | null>();
const RESOLVED_LIMIT = 256;

/** resolve() once the mounts are up (no mount discovery pending): no extra await. */
function resolveNow(path: string, syscall: string): Resolved | null {
  const known = resolved.get(path);
  if (known !== undefined) return known;
  const r = resolvePath(path, syscall);
  if (resolved.size >= RESOLVED_LIMIT) resolved.clear();
  resolved.set(path, r);
  return r;
}

function resolvePath(path: string, syscall: string): Resolved | null {
  if (typeof path !== "string") throw new TypeError(`${syscall}: path must be a string`);
  if (path.includes("\0")) throw new FsError("EINVAL", `path contains a NUL byte, ${syscall}`, path);
  if (!path.startsWith("/")) throw new FsError("EINVAL", `paths must be absolute, ${syscall}`, path);
  const p = normalizePath(path);
  if (p === "") return null;
  const slash = p.indexOf("/");
  const name = slash < 0 ? p : p.slice(0, slash);
  const fs = mounts.get(name);
  if (!fs) throw new FsError("ENOENT", `no such file or directory, ${syscall}`, path);
  return { fs, rel: slash < 0 ? "" : p.slice(slash + 1), mount: name, stats: null };
}

/** An error from a file system with the operation and the full path, as Node names them. */
function namedError(e: unknown, syscall: string, path: string): unknown {
  // Errors from a file system name its relative path: name the operation and the full path.
  if (e instanceof FsError && !e.detail.endsWith(`, ${syscall}`)) return new FsError(e.code, `${e.detail}, ${syscall}`, path);
  return e;
}

/** Adds the operation and path to errors from a file system, as Node does. */
function op<T>(syscall: string, path: string, f: () => Promise<T>): Promise<T> {
  const named = (e: unknown): never => {
    throw namedError(e, syscall, path);
  };
  let started: Promise<T>;
  try {
    started = f();
  } catch (e) {
    return Promise.reject(e).catch(named);
  }
  return started.then(undefined, named);
}

function writable(r: Resolved, syscall: string, path: string): void {
  if (r.fs.readOnly) throw new FsError("EROFS", `read-only file system, ${syscall}`, path);
}

/** File information, as `fs.stat` returns it. */
export interface Stats {
  size: number;
  mtimeMs: number;
  mtime: Date;
  mode: number;
  ino: number;
  isFile(): boolean;
  isDirectory(): boolean;
  /** True only from lstat, for the link itself. */
  isSymbolicLink(): boolean;
}

const notALink = (): boolean => false;

/** Stats with `mtime` made on first use (most callers only read mtimeMs). */
class StatsRecord implements Stats {
  declare readonly size: number;
  declare readonly mtimeMs: number;
  declare readonly mode: number;
  declare readonly ino: number;
  declare readonly isFile: () => boolean;
  declare readonly isDirectory: () => boolean;
  declare readonly isSymbolicLink: () => boolean;
  #mtime: Date | null = null;
  constructor(s: FsStat) {
    this.size = s.size;
    this.mtimeMs = s.mtimeMs;
    this.mode = s.mode;
    this.ino = s.ino;
    this.isFile = s.isFile;
    this.isDirectory = s.isDirectory;
    this.isSymbolicLink = s.isSymbolicLink ?? notALink;
  }
  get mtime(): Date {
    return (this.#mtime ??= new Date(this.mtimeMs));
  }
}

function toStats(s: FsStat): Stats {
  return new StatsRecord(s);
}

/**
 * The Stats of a path whose answer never changes (the image's files), shared by every caller
 * that asks for it: frozen, so that no caller can change what another sees, and with a Date of
 * its own per read of `mtime` (a Date can be changed).
 */
class SharedStats extends StatsRecord {
  override get mtime(): Date {
    return new Date(this.mtimeMs);
  }
}

/**
 * `r.fs.statSync(r.rel)` as Stats. The image file system never changes, so its answer is
 * kept with the resolved path and shared (no Stats made per call); others get a new one.
 */
function statsNow(r: Resolved): Stats {
  const known = r.stats;
  if (known !== null) return known;
  const fs = r.fs;
  const s = fs.statSync!(r.rel);
  if (!(fs instanceof ImageFs)) return toStats(s);
  const stats = Object.freeze(new SharedStats(s));
  r.stats = stats;
  return stats;
}

/** The file system's lstat, or its stat where that never follows a link. */
function lstatOf(fs: FileSystem, rel: string): Promise<FsStat> {
  return fs.lstat ? fs.lstat(rel) : fs.stat(rel);
}

const ROOT_STAT: FsStat = { size: 0, mtimeMs: 0, mode: 0o40555, ino: 1, isFile: () => false, isDirectory: () => true };

export function stat(path: string): Promise<Stats> {
  if (pendingMounts !== null || mounting !== null) return statAfterMount(path);
  let r: Resolved | null;
  try {
    r = resolveNow(path, "stat");
  } catch (e) {
    return Promise.reject(e);
  }
  if (!r) return Promise.resolve(toStats(ROOT_STAT));
  const fs = r.fs;
  if (fs.statSync !== undefined) {
    // answered at once: one settled promise, no async frames
    try {
      return Promise.resolve(statsNow(r));
    } catch (e) {
      return Promise.reject(namedError(e, "stat", path));
    }
  }
  return op("stat", path, () => fs.stat(r.rel)).then(toStats);
}

/**
 * stat() answered at once, for file systems that hold their files in memory (the image's
 * files under /app). Any other file system — or any path before the mounts are up — throws
 * FsError EAGAIN without doing anything: ask stat() then. Lets a handler answer without a
 * promise when it can (the HTTP server writes such a response without any).
 */
export function statSync(path: string): Stats {
  // (resolveSync written out for a path resolved before, once mounted: two calls less)
  const known = pendingMounts === null && mounting === null ? resolved.get(path) : undefined;
  const r = known !== undefined ? known : resolveSync(path, "stat");
  if (r === null) return toStats(ROOT_STAT);
  if (r.stats !== null) return r.stats; // (statsNow's first answer, without its call)
  if (r.fs.statSync === undefined) throw cannotNow("stat", path);
  try {
    return statsNow(r);
  } catch (e) {
    throw namedError(e, "stat", path);
  }
}

/** readFile() (bytes) answered at once, where statSync() can answer; FsError EAGAIN otherwise. */
export function readFileSync(path: string): Uint8Array {
  const r = resolveSync(path, "open");
  if (r === null || r.fs.readFileSync === undefined) throw cannotNow("open", path);
  try {
    return r.fs.readFileSync(r.rel);
  } catch (e) {
    throw namedError(e, "open", path);
  }
}

function resolveSync(path: string, syscall: string): Resolved | null {
  if (pendingMounts !== null || mounting !== null) {
    ready().catch(() => undefined); // the mounts come up meanwhile (their errors surface in the promise API)
    throw cannotNow(syscall, path);
  }
  return resolveNow(path, syscall);
}

function cannotNow(syscall: string, path: string): FsError {
  return new FsError("EAGAIN", `not answerable at once (use the promise API), ${syscall}`, path);
}

async function statAfterMount(path: string): Promise<Stats> {
  await ready();
  return stat(path);
}

/** stat that reports a symlink in the last component as the link itself (Node's lstat). */
export async function lstat(path: string): Promise<Stats> {
  const r = await resolve(path, "lstat");
  if (!r) return toStats(ROOT_STAT);
  return op("lstat", path, async () => toStats(await lstatOf(r.fs, r.rel)));
}

export async function readdir(path: string): Promise<string[]> {
  const r = await resolve(path, "scandir");
  if (!r) return [...mounts.keys()].sort();
  return op("scandir", path, () => r.fs.readdir(r.rel));
}

/** Node's flag strings: r, r+, w, w+, wx, a, a+, ax … */
export function parseFlags(flags: string): OpenFlags {
  const table: Record<string, OpenFlags> = {
    "r": { read: true, write: false, append: false, create: false, exclusive: false, truncate: false },
    "r+": { read: true, write: true, append: false, create: false, exclusive: false, truncate: false },
    "w": { read: false, write: true, append: false, create: true, exclusive: false, truncate: true },
    "w+": { read: true, write: true, append: false, create: true, exclusive: false, truncate: true },
    "a": { read: false, write: true, append: true, create: true, exclusive: false, truncate: false },
    "a+": { read: true, write: true, append: true, create: true, exclusive: false, truncate: false },
  };
  const exclusive = flags.includes("x");
  const base = table[flags.replace("x", "")];
  if (!base || (exclusive && !base.create)) throw new FsError("EINVAL", `unknown file open flags '${flags}'`);
  return { ...base, exclusive };
}

/** An open file, like Node's FileHandle. */
export class FileHandle {
  #ops: FileHandleOps | null;
  #position = 0;
  #append: boolean;
  readonly path: string;

  /** @internal use open() */
  constructor(ops: FileHandleOps, path: string, append: boolean) {
    this.#ops = ops;
    this.path = path;
    this.#append = append;
  }

  #live(syscall: string): FileHandleOps {
    if (!this.#ops) throw new FsError("EBADF", `bad file descriptor, ${syscall}`, this.path);
    return this.#ops;
  }

  /** Reads into `buffer`; position null continues from the handle's current position. */
  async read(buffer: Uint8Array, offset = 0, length = buffer.length - offset, position: number | null = null): Promise<{ bytesRead: number; buffer: Uint8Array }> {
    const ops = this.#live("read");
    if (offset < 0 || length < 0 || offset + length > buffer.length) throw new RangeError("read: offset/length outside the buffer");
    const at = position ?? this.#position;
    const n = await op("read", this.path, () => ops.read(buffer, offset, length, at));
    if (position === null) this.#position += n;
    return { bytesRead: n, buffer };
  }

  /** Writes `data`; in append mode always at the end. */
  async write(data: Uint8Array | string, offset = 0, length?: number, position: number | null = null): Promise<{ bytesWritten: number }> {
    const ops = this.#live("write");
    markDirty();
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    const len = length ?? bytes.length - offset;
    if (offset < 0 || len < 0 || offset + len > bytes.length) throw new RangeError("write: offset/length outside the data");
    let at = position ?? this.#position;
    if (this.#append) at = (await ops.stat()).size;
    let done = 0;
    while (done < len) {
      const n = await op("write", this.path, () => ops.write(bytes, offset + done, len - done, at + done));
      if (n <= 0) throw new FsError("EIO", "write made no progress", this.path);
      done += n;
    }
    if (position === null || this.#append) this.#position = at + done;
    return { bytesWritten: done };
  }

  async readFile(): Promise<Uint8Array> {
    const ops = this.#live("read");
    const size = (await ops.stat()).size;
    // the size comes from the file system (an untrusted disk): check it before allocating
    if (!Number.isSafeInteger(size) || size < 0) throw new FsError("EIO", `impossible file size ${size}, read`, this.path);
    if (size > MAX_READ_FILE_BYTES) throw new FsError("EFBIG", `file too large to read whole (${size} bytes; use open() and read()), read`, this.path);
    const out = new Uint8Array(size);
    let done = 0;
    while (done < size) {
      const n = await op("read", this.path, () => ops.read(out, done, size - done, done));
      if (n === 0) break;
      done += n;
    }
    return done === size ? out : out.subarray(0, done);
  }

  async stat(): Promise<Stats> {
    const ops = this.#live("fstat");
    return toStats(await op("fstat", this.path, () => ops.stat()));
  }

  async truncate(length = 0): Promise<void> {
    const ops = this.#live("ftruncate");
    markDirty();
    await op("ftruncate", this.path, () => ops.truncate(length));
  }

  /** Makes the file's data durable (FSYNC on virtio-fs, write-back on ext2). */
  async sync(): Promise<void> {
    const ops = this.#live("fsync");
    await op("fsync", this.path, () => ops.sync());
  }

  async close(): Promise<void> {
    const ops = this.#ops;
    if (!ops) return;
    this.#ops = null;
    openFiles--;
    await op("close", this.path, () => ops.close());
  }
}

/** Opens a file (`flags` as in Node: "r" by default). */
export async function open(path: string, flags = "r", mode = 0o666): Promise<FileHandle> {
  const f = parseFlags(flags);
  const r = await resolve(path, "open");
  if (!r) throw new FsError("EISDIR", "illegal operation on a directory, open", path);
  if (f.write) {
    writable(r, "open", path);
    markDirty();
  }
  if (openFiles >= MAX_OPEN_FILES) throw new FsError("EMFILE", `too many open files (${MAX_OPEN_FILES}), open`, path);
  openFiles++; // counted before the await: concurrent opens must not all pass the check
  try {
    const ops = await op("open", path, () => r.fs.open(r.rel, f, mode));
    return new FileHandle(ops, path, f.append);
  } catch (e) {
    openFiles--;
    throw e;
  }
}

/** The whole file; with an encoding, as a string. */
export function readFile(path: string): Promise<Uint8Array>;
export function readFile(path: string, encoding: "utf8" | "utf-8" | { encoding: "utf8" | "utf-8" }): Promise<string>;
export function readFile(path: string, encoding?: "utf8" | "utf-8" | { encoding: "utf8" | "utf-8" }): Promise<Uint8Array | string> {
  if (pendingMounts === null && mounting === null && !encoding) {
    let r: Resolved | null;
    try {
      r = resolveNow(path, "open");
    } catch (e) {
      return Promise.reject(e);
    }
    if (r?.fs.readFileSync !== undefined) {
      // answered at once: one settled promise, no async frames
      try {
        return Promise.resolve(r.fs.readFileSync(r.rel));
      } catch (e) {
        return Promise.reject(namedError(e, "open", path));
      }
    }
  }
  return readFileAsync(path, encoding);
}

async function readFileAsync(path: string, encoding?: "utf8" | "utf-8" | { encoding: "utf8" | "utf-8" }): Promise<Uint8Array | string> {
  const r = pendingMounts === null && mounting === null ? resolveNow(path, "open") : await resolve(path, "open");
  if (r?.fs.readFileDirect) {
    const fs = r.fs;
    const bytes = await op("open", path, () => fs.readFileDirect!(r.rel));
    return encoding ? new TextDecoder().decode(bytes) : bytes;
  }
  const h = await open(path, "r");
  try {
    const bytes = await h.readFile();
    return encoding ? new TextDecoder().decode(bytes) : bytes;
  } finally {
    await h.close();
  }
}

/** Replaces (or creates) the file with `data`. */
export async function writeFile(path: string, data: Uint8Array | string, options: { flag?: string; mode?: number } = {}): Promise<void> {
  const h = await open(path, options.flag ?? "w", options.mode);
  try {
    await h.write(data, 0, undefined, 0);
  } finally {
    await h.close();
  }
}

/** Appends `data` to the file, creating it if needed. */
export async function appendFile(path: string, data: Uint8Array | string): Promise<void> {
  const h = await open(path, "a");
  try {
    await h.write(data);
  } finally {
    await h.close();
  }
}

/** Creates a directory; with `recursive`, its missing parents too (returns the first created). */
export async function mkdir(path: string, options: { recursive?: boolean; mode?: number } = {}): Promise<string | undefined> {
  const r = await resolve(path, "mkdir");
  if (!r) {
    if (options.recursive) return undefined;
    throw new FsError("EEXIST", "file already exists, mkdir", path);
  }
  writable(r, "mkdir", path);
  markDirty();
  const mode = options.mode ?? 0o777;
  if (!options.recursive) {
    await op("mkdir", path, () => r.fs.mkdir(r.rel, mode));
    return undefined;
  }
  const parts = r.rel.split("/").filter((p) => p !== "");
  let first: string | undefined;
  for (let i = 1; i <= parts.length; i++) {
    const rel = parts.slice(0, i).join("/");
    const full = `/${r.mount}/${rel}`;
    try {
      const s = await r.fs.stat(rel);
      if (!s.isDirectory()) throw new FsError("ENOTDIR", "not a directory, mkdir", full);
    } catch (e) {
      if (!(e instanceof FsError) || e.code !== "ENOENT") throw e;
      await op("mkdir", full, () => r.fs.mkdir(rel, mode));
      first ??= full;
    }
  }
  return first;
}

/** Removes a file; with `recursive`, a directory and everything in it; `force` ignores ENOENT. */
export async function rm(path: string, options: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
  const r = await resolve(path, "rm");
  if (!r || r.rel === "") throw new FsError("EPERM", "operation not permitted (a mount point), rm", path);
  writable(r, "rm", path);
  markDirty();
  // Never through a symlink: rm of a link removes the link, and a recursive rm stays inside
  // the tree it was given (as rm -r and Node's fs.rm do).
  let s: FsStat;
  try {
    s = await lstatOf(r.fs, r.rel);
  } catch (e) {
    if (options.force && e instanceof FsError && e.code === "ENOENT") return;
    throw new FsError("ENOENT", "no such file or directory, rm", path);
  }
  if (!s.isDirectory()) return op("unlink", path, () => r.fs.unlink(r.rel));
  if (!options.recursive) throw new FsError("EISDIR", "is a directory (use { recursive: true }), rm", path);
  // Depth-first with an explicit stack and a bound: a corrupted file system cannot loop us.
  const stack: { rel: string; listed: boolean }[] = [{ rel: r.rel, listed: false }];
  for (let steps = 0; stack.length > 0; steps++) {
    if (steps > 1_000_000) throw new FsError("ELOOP", "directory tree too deep or cyclic, rm", path);
    const top = stack[stack.length - 1]!;
    if (!top.listed) {
      top.listed = true;
      for (const name of await r.fs.readdir(top.rel)) {
        const child = `${top.rel}/${name}`;
        if ((await lstatOf(r.fs, child)).isDirectory()) stack.push({ rel: child, listed: false });
        else await op("unlink", `/${r.mount}/${child}`, () => r.fs.unlink(child));
      }
    } else {
      stack.pop();
      await op("rmdir", `/${r.mount}/${top.rel}`, () => r.fs.rmdir(top.rel));
    }
  }
}

export async function unlink(path: string): Promise<void> {
  const r = await resolve(path, "unlink");
  if (!r) throw new FsError("EISDIR", "illegal operation on a directory, unlink", path);
  writable(r, "unlink", path);
  markDirty();
  return op("unlink", path, () => r.fs.unlink(r.rel));
}

export async function rmdir(path: string): Promise<void> {
  const r = await resolve(path, "rmdir");
  if (!r || r.rel === "") throw new FsError("EBUSY", "resource busy (a mount point), rmdir", path);
  writable(r, "rmdir", path);
  markDirty();
  return op("rmdir", path, () => r.fs.rmdir(r.rel));
}

/** Renames within one mount (EXDEV across mounts, as rename(2)). */
export async function rename(from: string, to: string): Promise<void> {
  const a = await resolve(from, "rename");
  const b = await resolve(to, "rename");
  if (!a || !b || a.rel === "" || b.rel === "") throw new FsError("EBUSY", "resource busy (a mount point), rename", from);
  if (a.fs !== b.fs) throw new FsError("EXDEV", `cross-device link not permitted, rename '${from}' ->`, to);
  writable(a, "rename", from);
  markDirty();
  return op("rename", from, () => a.fs.rename(a.rel, b.rel));
}

/** Writes back every mount's dirty data (also done when the event loop runs dry). */
export async function syncAll(): Promise<void> {
  if (pendingMounts) return; // never used: nothing mounted, nothing dirty
  await ready();
  for (const fs of mounts.values()) await fs.syncAll();
  dirty = false;
}

/** Set by every mutating operation; the before-exit hook syncs only when set. */
let dirty = false;
/** @internal marks that something may need writing back */
export function markDirty(): void {
  dirty = true;
}
/** True when a sync was started (for the scheduler's before-exit hook). */
export function syncIfDirty(): boolean {
  if (!dirty) return false;
  dirty = false;
  void syncAll().catch((e: unknown) => console.error("fs: sync at exit failed:", e));
  return true;
}

export { FsError };
