/**
 * The FUSE wire protocol as virtio-fs carries it (virtio 1.2 §5.11.6; layouts from Linux's
 * include/uapi/linux/fuse.h, protocol 7.31, which QEMU's virtiofsd (7.36) accepts).
 *
 * Every request is `fuse_in_header` + op-specific arguments (+ data for WRITE); every reply is
 * `fuse_out_header` + op-specific result (+ data for READ / READDIRPLUS). All fields are
 * little-endian. 64-bit fields (node ids, file handles, offsets, sizes) are read as two 32-bit
 * halves into a JavaScript number: exact up to 2^53, which covers every value used here.
 *
 * This file is pure: views and constants, no device access, so it runs on Node for tests.
 */
import { TextDecoder } from "../encoding.ts";

/** FUSE_KERNEL_VERSION / the minor we speak (7.31: max_pages, no init_in extension). */
export const FUSE_MAJOR = 7;
export const FUSE_MINOR = 31;
/** Node id of the share's root directory (FUSE_ROOT_ID). */
export const FUSE_ROOT_ID = 1;

/** Opcodes (enum fuse_opcode). */
export const Op = {
  LOOKUP: 1, FORGET: 2, GETATTR: 3, SETATTR: 4, MKDIR: 9, UNLINK: 10, RMDIR: 11, RENAME: 12,
  OPEN: 14, READ: 15, WRITE: 16, STATFS: 17, RELEASE: 18, FSYNC: 20, FLUSH: 25, INIT: 26,
  OPENDIR: 27, READDIR: 28, RELEASEDIR: 29, CREATE: 35, DESTROY: 38, BATCH_FORGET: 42,
  READDIRPLUS: 44,
} as const;

/** Names of the opcodes above, for error messages. */
export const OP_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k]));

// fuse_init_in / fuse_init_out flags.
export const FUSE_ASYNC_READ = 1 << 0;
export const FUSE_ATOMIC_O_TRUNC = 1 << 3;
export const FUSE_BIG_WRITES = 1 << 5;
export const FUSE_DO_READDIRPLUS = 1 << 13;
export const FUSE_PARALLEL_DIROPS = 1 << 18;
export const FUSE_MAX_PAGES = 1 << 22;

// fuse_setattr_in.valid bits.
export const FATTR_SIZE = 1 << 3;
export const FATTR_ATIME = 1 << 4;
export const FATTR_MTIME = 1 << 5;
export const FATTR_FH = 1 << 6;
/** fuse_getattr_in.getattr_flags: `fh` is valid. */
export const FUSE_GETATTR_FH = 1;

// open(2) flags as Linux/x86-64 defines them (the server passes them to openat).
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;
export const O_DIRECTORY = 0o200000;

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;

/** Longest file name component (NAME_MAX). */
export const NAME_MAX = 255;

// Struct sizes in bytes.
export const IN_HEADER = 40;
export const OUT_HEADER = 16;
export const INIT_IN = 16;
/** fuse_init_out for minor >= 23; older servers send the first 24 bytes. */
export const INIT_OUT = 64;
export const INIT_OUT_MIN = 24;
export const ATTR = 88;
export const ENTRY_OUT = 40 + ATTR;
export const ATTR_OUT = 16 + ATTR;
export const GETATTR_IN = 16;
export const SETATTR_IN = 88;
export const OPEN_IN = 8;
export const OPEN_OUT = 16;
export const CREATE_IN = 16;
export const MKDIR_IN = 8;
export const RENAME_IN = 8;
export const READ_IN = 40;
export const WRITE_IN = 40;
export const WRITE_OUT = 8;
export const RELEASE_IN = 24;
export const FLUSH_IN = 24;
export const FSYNC_IN = 16;
export const STATFS_OUT = 80;
export const BATCH_FORGET_IN = 8;
export const FORGET_ONE = 16;
/** Offset of the name in fuse_dirent (FUSE_NAME_OFFSET). */
export const DIRENT_NAME = 24;

/** fuse_attr: what GETATTR, LOOKUP and friends say about an inode. */
export interface FuseAttr {
  ino: number;
  size: number;
  blocks: number;
  mtimeMs: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
}

/** A LOOKUP / MKDIR / CREATE / READDIRPLUS entry (fuse_entry_out). */
export interface FuseEntry {
  nodeid: number;
  /** How long (ms) the name → node binding may be cached. */
  entryValidMs: number;
  /** How long (ms) `attr` may be cached. */
  attrValidMs: number;
  attr: FuseAttr;
}

/** A file system's capacity (fuse_kstatfs). */
export interface FuseStatfs {
  blocks: number;
  freeBlocks: number;
  availableBlocks: number;
  files: number;
  freeFiles: number;
  blockSize: number;
  nameMax: number;
}

/** What the server agreed to in INIT (fuse_init_out). */
export interface FuseInitOut {
  major: number;
  minor: number;
  flags: number;
  maxWrite: number;
  maxPages: number;
}

/** Reads a little-endian u64 as a number (exact below 2^53). */
export function u64(v: DataView, at: number): number {
  return v.getUint32(at, true) + v.getUint32(at + 4, true) * 0x100000000;
}

/** Writes a non-negative integer below 2^53 as a little-endian u64. */
export function setU64(v: DataView, at: number, value: number): void {
  v.setUint32(at, value % 0x100000000, true);
  v.setUint32(at + 4, Math.floor(value / 0x100000000), true);
}

/** Fills fuse_in_header (len, opcode, unique, nodeid; uid, gid, pid 0: the guest is root). */
export function writeInHeader(v: DataView, at: number, length: number, opcode: number, unique: number, nodeid: number): void {
  v.setUint32(at, length, true);
  v.setUint32(at + 4, opcode, true);
  setU64(v, at + 8, unique);
  setU64(v, at + 16, nodeid);
  v.setUint32(at + 24, 0, true); // uid
  v.setUint32(at + 28, 0, true); // gid
  v.setUint32(at + 32, 0, true); // pid
  v.setUint32(at + 36, 0, true); // padding
}

/** fuse_attr at `at`: ino@0 size@8 blocks@16 atime@24 mtime@32 ctime@40 atimensec@48 mtimensec@52 ctimensec@56 mode@60 nlink@64 uid@68 gid@72. */
export function readAttr(v: DataView, at: number): FuseAttr {
  return {
    ino: u64(v, at),
    size: u64(v, at + 8),
    blocks: u64(v, at + 16),
    mtimeMs: u64(v, at + 32) * 1000 + Math.floor(v.getUint32(at + 52, true) / 1e6),
    mode: v.getUint32(at + 60, true),
    nlink: v.getUint32(at + 64, true),
    uid: v.getUint32(at + 68, true),
    gid: v.getUint32(at + 72, true),
  };
}

function validMs(seconds: number, nsec: number): number {
  return seconds * 1000 + nsec / 1e6;
}

/** fuse_entry_out at `at`: nodeid@0 generation@8 entry_valid@16 attr_valid@24 entry_valid_nsec@32 attr_valid_nsec@36 attr@40. */
export function readEntry(v: DataView, at: number): FuseEntry {
  return {
    nodeid: u64(v, at),
    entryValidMs: validMs(u64(v, at + 16), v.getUint32(at + 32, true)),
    attrValidMs: validMs(u64(v, at + 24), v.getUint32(at + 36, true)),
    attr: readAttr(v, at + 40),
  };
}

/** fuse_attr_out at `at`: attr_valid@0 attr_valid_nsec@8 dummy@12 attr@16; returns the attr and its validity (ms). */
export function readAttrOut(v: DataView, at: number): { attr: FuseAttr; attrValidMs: number } {
  return { attr: readAttr(v, at + 16), attrValidMs: validMs(u64(v, at), v.getUint32(at + 8, true)) };
}

/** fuse_init_out at `at` (`length` bytes: 24 for minor < 23, else 64). */
export function readInitOut(v: DataView, at: number, length: number): FuseInitOut {
  return {
    major: v.getUint32(at, true),
    minor: v.getUint32(at + 4, true),
    flags: v.getUint32(at + 12, true),
    maxWrite: v.getUint32(at + 20, true),
    maxPages: length >= 28 ? v.getUint16(at + 28, true) : 0,
  };
}

/** fuse_kstatfs at `at`: blocks@0 bfree@8 bavail@16 files@24 ffree@32 bsize@40 namelen@44 frsize@48. */
export function readStatfs(v: DataView, at: number): FuseStatfs {
  return {
    blocks: u64(v, at),
    freeBlocks: u64(v, at + 8),
    availableBlocks: u64(v, at + 16),
    files: u64(v, at + 24),
    freeFiles: u64(v, at + 32),
    blockSize: v.getUint32(at + 40, true),
    nameMax: v.getUint32(at + 44, true),
  };
}

/** One record of a READDIR / READDIRPLUS reply. */
export interface FuseDirent {
  name: string;
  /** Cookie to continue reading after this entry. */
  offset: number;
  /** DT_* type (4 directory, 8 regular file, ...). */
  type: number;
  /** READDIRPLUS only: the entry, or null for "." / ".." (node id 0: no lookup taken). */
  entry: FuseEntry | null;
}

/** Thrown by the parsers below when the device sent something malformed. */
export class FuseProtocolError extends Error {
  override name = "FuseProtocolError";
}

/**
 * Parses the records of a READDIR(PLUS) reply body: fuse_dirent {ino@0 off@8 namelen@16
 * type@20 name@24}, each padded to 8 bytes; READDIRPLUS prefixes each with fuse_entry_out.
 * Throws FuseProtocolError when a record runs past the body or its name is impossible.
 */
export function parseDirents(bytes: Uint8Array, length: number, plus: boolean): FuseDirent[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, length);
  const out: FuseDirent[] = [];
  const head = plus ? ENTRY_OUT : 0;
  let at = 0;
  while (at < length) {
    if (at + head + DIRENT_NAME > length) throw new FuseProtocolError(`directory record at byte ${at} runs past the ${length}-byte reply`);
    const d = at + head;
    const nameLength = v.getUint32(d + 16, true);
    const size = (head + DIRENT_NAME + nameLength + 7) & ~7;
    if (nameLength === 0 || nameLength > NAME_MAX || at + head + DIRENT_NAME + nameLength > length) {
      throw new FuseProtocolError(`directory record at byte ${at} has a bad name length ${nameLength}`);
    }
    const name = decodeName(bytes, d + DIRENT_NAME, nameLength);
    if (name.includes("/") || name.includes("\0")) throw new FuseProtocolError(`directory record at byte ${at} has a bad name`);
    let entry: FuseEntry | null = null;
    if (plus) {
      entry = readEntry(v, at);
      if (entry.nodeid === 0) entry = null;
    }
    out.push({ name, offset: u64(v, d + 8), type: v.getUint32(d + 20, true), entry });
    at += size;
  }
  return out;
}

const utf8 = new TextDecoder();

/** Decodes a file name (ASCII fast path, UTF-8 otherwise). */
export function decodeName(bytes: Uint8Array, at: number, length: number): string {
  let s = "";
  for (let i = 0; i < length; i++) {
    const c = bytes[at + i]!;
    if (c >= 0x80) return utf8.decode(bytes.subarray(at, at + length));
    s += String.fromCharCode(c);
  }
  return s;
}

/** Node's error codes for the errno values a FUSE server returns (negated in fuse_out_header.error). */
const ERRNO_CODES: Record<number, string> = {
  1: "EPERM", 2: "ENOENT", 4: "EINTR", 5: "EIO", 6: "ENXIO", 7: "E2BIG", 9: "EBADF", 11: "EAGAIN",
  12: "ENOMEM", 13: "EACCES", 14: "EFAULT", 16: "EBUSY", 17: "EEXIST", 18: "EXDEV", 19: "ENODEV",
  20: "ENOTDIR", 21: "EISDIR", 22: "EINVAL", 23: "ENFILE", 24: "EMFILE", 26: "ETXTBSY", 27: "EFBIG",
  28: "ENOSPC", 29: "ESPIPE", 30: "EROFS", 31: "EMLINK", 34: "ERANGE", 36: "ENAMETOOLONG",
  38: "ENOSYS", 39: "ENOTEMPTY", 40: "ELOOP", 61: "ENODATA", 75: "EOVERFLOW", 95: "EOPNOTSUPP",
  110: "ETIMEDOUT", 116: "ESTALE", 122: "EDQUOT",
};

/** The Node error code for a positive errno ("EIO" for unknown ones). */
export function errnoCode(errno: number): string {
  return ERRNO_CODES[errno] ?? "EIO";
}
