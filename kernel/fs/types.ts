/**
 * The contract between the VFS (kernel/fs/vfs.ts) and the file systems mounted in it:
 * the image's packed files (/app), virtio-fs (/share), ext2 on virtio-blk (/disk).
 *
 * Paths handed to a file system are relative to its mount point, already normalised by
 * the VFS ("a/b/c", "" for the mount's root; never ".." or "."). Errors are FsError with a
 * Node error code (ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY, ENOSPC, EROFS, EIO, EINVAL,
 * EMFILE, EBADF, ENAMETOOLONG, ELOOP, EXDEV).
 */

export interface FsStat {
  size: number;
  mtimeMs: number;
  /** permission bits and type as in st_mode (0 where the file system has none) */
  mode: number;
  /** inode or node id, for diagnostics */
  ino: number;
  isFile(): boolean;
  isDirectory(): boolean;
  /** True for the link itself (only lstat reports links). Absent: the file system has none. */
  isSymbolicLink?(): boolean;
}

/** An open file of a mounted file system. Offsets are byte positions. */
export interface FileHandleOps {
  /** Reads up to `length` bytes at `position` into `buffer[offset..]`; returns bytes read (0 at EOF). */
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  /** Writes `buffer[offset..offset+length)` at `position`; returns bytes written. */
  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  stat(): Promise<FsStat>;
  truncate(length: number): Promise<void>;
  /** Makes this file's data and metadata durable (FSYNC / block cache write-back). */
  sync(): Promise<void>;
  close(): Promise<void>;
}

export type OpenFlags = {
  read: boolean;
  write: boolean;
  append: boolean;
  create: boolean;
  /** with create: fail with EEXIST if the file exists */
  exclusive: boolean;
  truncate: boolean;
};

/** What a mounted file system provides. Read-only file systems throw EROFS from writers. */
export interface FileSystem {
  readonly readOnly: boolean;
  /** Follows a symlink in the last component where the file system does (ext2). */
  stat(path: string): Promise<FsStat>;
  /** Like stat, but a symlink in the last component is reported as itself. Absent: stat
   *  never follows one (virtio-fs answers LOOKUP for the link itself; /app has none). */
  lstat?(path: string): Promise<FsStat>;
  readdir(path: string): Promise<string[]>;
  open(path: string, flags: OpenFlags, mode: number): Promise<FileHandleOps>;
  mkdir(path: string, mode: number): Promise<void>;
  /** Removes a file (unlink). */
  unlink(path: string): Promise<void>;
  /** Removes an empty directory. */
  rmdir(path: string): Promise<void>;
  /** Renames within this file system (the VFS refuses cross-mount renames with EXDEV). */
  rename(from: string, to: string): Promise<void>;
  /** Writes back everything dirty (sync()); called on a clean exit too. */
  syncAll(): Promise<void>;
  /** Optional fast path for whole-file reads (the image's files: a zero-copy view). */
  readFileDirect?(path: string): Promise<Uint8Array>;
  /** Optional: stat answered at once (a file system held in memory); throws as stat rejects. */
  statSync?(path: string): FsStat;
  /** Optional: readFileDirect answered at once; throws as it rejects. */
  readFileSync?(path: string): Uint8Array;
  /** Bytes total and free, when known. */
  statfs?(): Promise<{ blockSize: number; blocks: number; freeBlocks: number; files: number; freeFiles: number }>;
}
