/**
 * ext2 on a block device as a FileSystem (kernel/fs/types.ts): `mountExt2(device)`.
 *
 * Operations run one at a time (a per-mount queue), so on-disk structures never see two
 * half-done changes; between operations the block cache is trimmed to its limit. Data is
 * written back by syncAll() (and a handle's sync()), data blocks first, then metadata;
 * the superblock says "not clean" on disk while changes are being written and "clean"
 * again once a sync has completed, so a crash in between makes `e2fsck -p` check it.
 *
 * ext3 images (has_journal) and images with features this driver does not maintain
 * mount read-only, with the reason in `readOnlyReason` (and printed once); images with
 * unknown incompatible features (ext4) are refused.
 */
import { hw, isNative } from "../../hw.ts";
import { TextDecoder } from "../../encoding.ts";
import type { FileHandleOps, FileSystem, FsStat, OpenFlags } from "../types.ts";
import { Allocator } from "./alloc.ts";
import { BlockCache, type CacheStats, type Ext2BlockDevice } from "./cache.ts";
import { Directories } from "./dir.ts";
import { corrupted, ext2Error, FsError } from "./errors.ts";
import { ROOT_INODE, S_IFDIR, S_IFREG, type Inode, InodeTable } from "./inode.ts";
import {
  descriptorTableBlock, GROUP_DESC_SIZE, parseGroupDescriptor, parseSuperblock, STATE_VALID, storeGroupDescriptor,
  storeSuperblock, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, type GroupDescriptor, type Superblock,
} from "./superblock.ts";

export type { Ext2BlockDevice } from "./cache.ts";

/** Options of mountExt2. */
export interface Ext2MountOptions {
  /** Block cache limit in bytes (default 8 MiB). */
  cacheBytes?: number;
  /** Mount read-only even when the file system could be written. */
  readOnly?: boolean;
  /** Buffer allocator for device I/O (default: DMA memory in the guest, plain memory on Node). */
  allocate?: (bytes: number) => Uint8Array;
  /** Where mount warnings go (default console.log). */
  log?: (message: string) => void;
}

/** Symlinks followed while resolving one path before ELOOP. */
const MAX_SYMLINKS = 8;
/** Blocks a write handles between cache trims. */
const WRITE_CHUNK_BLOCKS = 256;
/** Upper bound of '..' steps when checking that a directory is not moved under itself. */
const MAX_DEPTH = 4096;

const seconds = (): number => Math.floor(Date.now() / 1000);

function defaultAllocate(bytes: number): Uint8Array {
  return isNative ? new Uint8Array(hw.dmaAlloc(bytes, 512).buffer) : new Uint8Array(bytes);
}

function statOf(inode: Inode): FsStat {
  const directory = inode.isDirectory;
  const file = inode.isFile;
  const link = inode.isSymlink;
  return {
    size: inode.size,
    mtimeMs: inode.mtime * 1000,
    mode: inode.mode,
    ino: inode.ino,
    isFile: () => file,
    isDirectory: () => directory,
    isSymbolicLink: () => link,
  };
}

/** Splits a mount-relative path ("a/b", "" for the root) into names. */
function components(path: string): string[] {
  return path.split("/").filter((c) => c !== "" && c !== ".");
}

/** A mounted ext2 file system. */
export class Ext2FileSystem implements FileSystem {
  readonly readOnly: boolean;
  /** Why the file system is read-only (ext3 journal, unsupported features, …), or null. */
  readonly readOnlyReason: string | null;
  private readonly alloc: Allocator;
  private readonly inodes: InodeTable;
  private readonly dirs: Directories;
  private readonly openCounts = new Map<number, number>();
  private queue: Promise<unknown> = Promise.resolve();
  /** The superblock on disk says "clean" (state VALID). */
  private diskClean: boolean;
  /** The file system was clean at mount: only then may a completed sync mark it clean again. */
  private readonly cleanAtMount: boolean;

  constructor(
    private readonly device: Ext2BlockDevice,
    private readonly sb: Superblock,
    private readonly groups: GroupDescriptor[],
    private readonly cache: BlockCache,
    readOnlyReason: string | null,
  ) {
    this.readOnlyReason = readOnlyReason;
    this.readOnly = readOnlyReason !== null;
    this.alloc = new Allocator(sb, groups, cache);
    this.inodes = new InodeTable(sb, groups, cache, this.alloc);
    this.dirs = new Directories(sb, cache, this.inodes);
    this.cleanAtMount = (sb.state & STATE_VALID) !== 0;
    this.diskClean = this.cleanAtMount;
    cache.onPressure = () => this.writeBack(false);
  }

  /** Superblock figures, for diagnostics. */
  get superblock(): Readonly<Superblock> {
    return this.sb;
  }

  /** Block cache counters, for benchmarks. */
  get cacheStats(): Readonly<CacheStats> {
    return this.cache.stats;
  }

  /** Runs `operation` after every earlier one, then trims the cache. */
  private serial<T>(operation: () => Promise<T>): Promise<T> {
    const run = this.queue.then(async () => {
      try {
        return await operation();
      } finally {
        await this.cache.trim().catch(() => undefined);
      }
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private writable(path: string): void {
    if (this.readOnly) throw ext2Error("EROFS", `read-only file system (${this.readOnlyReason})`, path);
  }

  private async readLink(link: Inode): Promise<string> {
    const size = link.size;
    if (size > this.sb.blockSize || size > 4096) throw corrupted(`symlink inode ${link.ino} has size ${size}`);
    let bytes: Uint8Array;
    if (this.inodes.isFastSymlink(link)) {
      if (size > 60) throw corrupted(`fast symlink inode ${link.ino} has size ${size}`);
      bytes = link.raw.subarray(40, 40 + size);
    } else {
      const { block } = await this.inodes.map(link, 0, false);
      if (block === 0) throw corrupted(`symlink inode ${link.ino} has no data block`);
      bytes = (await this.cache.get(block)).subarray(0, size);
    }
    return new TextDecoder().decode(bytes);
  }

  /** Checks an inode reached through a directory entry is in use. */
  private async live(ino: number, path: string): Promise<Inode> {
    const inode = await this.inodes.get(ino);
    if (inode.links === 0 || inode.mode === 0) throw corrupted(`the entry for '${path}' points to free inode ${ino}`);
    return inode;
  }

  /**
   * Walks `path` from the root following symlinks (the last one too when `followLast`);
   * returns the inode, or throws ENOENT/ENOTDIR/ELOOP.
   */
  private async resolve(path: string, followLast = true): Promise<Inode> {
    const pending = components(path).reverse();
    let current = await this.inodes.get(ROOT_INODE);
    let links = 0;
    let steps = 0;
    while (pending.length > 0) {
      if (++steps > 4096) throw ext2Error("ELOOP", "too many levels of symbolic links", path);
      const name = pending.pop()!;
      if (!current.isDirectory) throw ext2Error("ENOTDIR", "not a directory", path);
      let ino: number;
      if (name === "..") {
        ino = current.ino === ROOT_INODE ? ROOT_INODE : await this.dirs.parentOf(current);
        if (ino === 0) throw corrupted(`directory inode ${current.ino} has no '..' entry`);
      } else {
        ino = await this.dirs.lookup(current, name);
        if (ino === 0) throw ext2Error("ENOENT", "no such file or directory", path);
      }
      const next = await this.live(ino, path);
      if (next.isSymlink && (pending.length > 0 || followLast)) {
        if (++links > MAX_SYMLINKS) throw ext2Error("ELOOP", "too many levels of symbolic links", path);
        const target = await this.readLink(next);
        for (const part of components(target).reverse()) pending.push(part);
        if (target.startsWith("/")) current = await this.inodes.get(ROOT_INODE);
        continue;
      }
      current = next;
    }
    return current;
  }

  /** The directory that holds the last name of `path`, and that name. */
  private async resolveParent(path: string): Promise<{ parent: Inode; name: string }> {
    const parts = components(path);
    const name = parts.pop();
    if (name === undefined) throw ext2Error("EBUSY", "the root of the mount cannot be changed", path);
    if (name === "..") throw ext2Error("EINVAL", "invalid file name '..'", path);
    const parent = await this.resolve(parts.join("/"));
    if (!parent.isDirectory) throw ext2Error("ENOTDIR", "not a directory", path);
    return { parent, name };
  }

  stat(path: string): Promise<FsStat> {
    return this.serial(async () => statOf(await this.resolve(path)));
  }

  lstat(path: string): Promise<FsStat> {
    return this.serial(async () => statOf(await this.resolve(path, false)));
  }

  readdir(path: string): Promise<string[]> {
    return this.serial(async () => {
      const dir = await this.resolve(path);
      if (!dir.isDirectory) throw ext2Error("ENOTDIR", "not a directory", path);
      return (await this.dirs.list(dir)).map((e) => e.name).filter((n) => n !== "." && n !== "..");
    });
  }

  open(path: string, flags: OpenFlags, mode: number): Promise<FileHandleOps> {
    return this.serial(async () => {
      if ((flags.write || flags.append || flags.create || flags.truncate) && this.readOnly) this.writable(path);
      let inode: Inode;
      if (flags.create) {
        const { parent, name } = await this.resolveParent(path);
        const existing = await this.dirs.lookup(parent, name);
        if (existing !== 0 && flags.exclusive) throw ext2Error("EEXIST", "file already exists", path);
        if (existing !== 0) {
          inode = await this.live(existing, path);
          if (inode.isSymlink) inode = await this.resolve(path);
        } else {
          inode = await this.createInode(parent, name, S_IFREG | (mode & 0o7777), path);
        }
      } else {
        inode = await this.resolve(path);
      }
      if (inode.isDirectory) throw ext2Error("EISDIR", "illegal operation on a directory", path);
      if (!inode.isFile) throw ext2Error("EINVAL", "not a regular file", path);
      if (flags.truncate && (flags.write || flags.append) && inode.size > 0) await this.truncateInode(inode, 0);
      this.openCounts.set(inode.ino, (this.openCounts.get(inode.ino) ?? 0) + 1);
      return new Ext2FileHandle(this, inode.ino, flags, path);
    });
  }

  /** Allocates and links a new inode named `name` in `parent`. */
  private async createInode(parent: Inode, name: string, mode: number, path: string): Promise<Inode> {
    this.writable(path);
    Directories.encodeName(name);
    const directory = (mode & 0xf000) === S_IFDIR;
    const ino = await this.alloc.allocateInode(this.alloc.groupOfInode(parent.ino), directory);
    const now = seconds();
    const inode = this.inodes.fresh(ino);
    inode.initialise(mode, directory ? 2 : 1, now, (Math.random() * 0x100000000) >>> 0);
    try {
      if (directory) await this.dirs.initialise(inode, parent.ino);
      await this.inodes.save(inode);
      await this.dirs.add(parent, name, ino, mode, now);
    } catch (e) {
      // ENOSPC half-way (no block for the directory or the entry): give everything back.
      await this.inodes.freeFrom(inode, 0);
      inode.markDeleted(now);
      await this.inodes.save(inode);
      await this.alloc.freeInode(ino, directory);
      this.inodes.drop(ino);
      throw e;
    }
    if (directory) {
      parent.links = parent.links + 1;
      await this.inodes.save(parent);
    }
    return inode;
  }

  mkdir(path: string, mode: number): Promise<void> {
    return this.serial(async () => {
      this.writable(path);
      const { parent, name } = await this.resolveParent(path);
      if ((await this.dirs.lookup(parent, name)) !== 0) throw ext2Error("EEXIST", "file already exists", path);
      await this.createInode(parent, name, S_IFDIR | (mode & 0o7777), path);
    });
  }

  /** Frees an inode with no links left and no open handles: blocks, xattr block, bitmap bit. */
  private async deleteInode(inode: Inode): Promise<void> {
    const directory = inode.isDirectory;
    await this.inodes.freeFrom(inode, 0);
    await this.inodes.releaseXattrBlock(inode);
    inode.size = 0;
    inode.markDeleted(seconds());
    await this.inodes.save(inode);
    await this.alloc.freeInode(inode.ino, directory);
    this.inodes.drop(inode.ino);
  }

  /** Drops one link of a non-directory; deletes it when none is left and nothing has it open. */
  private async dropLink(inode: Inode): Promise<void> {
    inode.links = Math.max(0, inode.links - 1);
    inode.touch("c", seconds());
    if (inode.links === 0 && (this.openCounts.get(inode.ino) ?? 0) === 0) await this.deleteInode(inode);
    else await this.inodes.save(inode);
  }

  unlink(path: string): Promise<void> {
    return this.serial(async () => {
      this.writable(path);
      const { parent, name } = await this.resolveParent(path);
      const ino = await this.dirs.lookup(parent, name);
      if (ino === 0) throw ext2Error("ENOENT", "no such file or directory", path);
      const inode = await this.live(ino, path);
      if (inode.isDirectory) throw ext2Error("EISDIR", "illegal operation on a directory", path);
      await this.dirs.remove(parent, name, seconds());
      await this.dropLink(inode);
    });
  }

  rmdir(path: string): Promise<void> {
    return this.serial(async () => {
      this.writable(path);
      const { parent, name } = await this.resolveParent(path);
      const ino = await this.dirs.lookup(parent, name);
      if (ino === 0) throw ext2Error("ENOENT", "no such file or directory", path);
      const dir = await this.live(ino, path);
      if (!dir.isDirectory) throw ext2Error("ENOTDIR", "not a directory", path);
      if (!(await this.dirs.isEmpty(dir))) throw ext2Error("ENOTEMPTY", "directory not empty", path);
      await this.dirs.remove(parent, name, seconds());
      parent.links = Math.max(1, parent.links - 1);
      await this.inodes.save(parent);
      await this.deleteInode(dir);
    });
  }

  rename(from: string, to: string): Promise<void> {
    return this.serial(async () => {
      this.writable(from);
      const source = await this.resolveParent(from);
      const target = await this.resolveParent(to);
      const ino = await this.dirs.lookup(source.parent, source.name);
      if (ino === 0) throw ext2Error("ENOENT", "no such file or directory", from);
      const moved = await this.live(ino, from);
      const sameParent = source.parent.ino === target.parent.ino;
      if (sameParent && source.name === target.name) return;
      if (moved.isDirectory && !sameParent) {
        // The target directory must not be the moved one or inside it.
        let up = target.parent;
        for (let depth = 0; up.ino !== ROOT_INODE; depth++) {
          if (up.ino === ino) throw ext2Error("EINVAL", "cannot move a directory into itself", to);
          if (depth > MAX_DEPTH) throw corrupted(`directory loop above inode ${target.parent.ino}`);
          const parentIno = await this.dirs.parentOf(up);
          if (parentIno === 0) throw corrupted(`directory inode ${up.ino} has no '..' entry`);
          up = await this.inodes.get(parentIno);
        }
      }
      const now = seconds();
      const existingIno = await this.dirs.lookup(target.parent, target.name);
      if (existingIno === ino) return; // two names of one file: nothing to do (POSIX)
      if (existingIno !== 0) {
        const existing = await this.live(existingIno, to);
        if (moved.isDirectory) {
          if (!existing.isDirectory) throw ext2Error("ENOTDIR", "not a directory", to);
          if (!(await this.dirs.isEmpty(existing))) throw ext2Error("ENOTEMPTY", "directory not empty", to);
        } else if (existing.isDirectory) {
          throw ext2Error("EISDIR", "illegal operation on a directory", to);
        }
        await this.dirs.replace(target.parent, target.name, ino, moved.mode, now);
        if (existing.isDirectory) {
          target.parent.links = Math.max(1, target.parent.links - 1);
          await this.inodes.save(target.parent);
          await this.deleteInode(existing);
        } else {
          await this.dropLink(existing);
        }
      } else {
        await this.dirs.add(target.parent, target.name, ino, moved.mode, now);
      }
      await this.dirs.remove(source.parent, source.name, now);
      if (moved.isDirectory && !sameParent) {
        await this.dirs.setParent(moved, target.parent.ino);
        source.parent.links = Math.max(1, source.parent.links - 1);
        target.parent.links = target.parent.links + 1;
        await this.inodes.save(source.parent);
        await this.inodes.save(target.parent);
      }
      moved.touch("c", now);
      await this.inodes.save(moved);
    });
  }

  syncAll(): Promise<void> {
    return this.serial(() => this.writeBack(true));
  }

  statfs(): Promise<{ blockSize: number; blocks: number; freeBlocks: number; files: number; freeFiles: number }> {
    const sb = this.sb;
    return Promise.resolve({ blockSize: sb.blockSize, blocks: sb.blocksCount, freeBlocks: sb.freeBlocks, files: sb.inodesCount, freeFiles: sb.freeInodes });
  }

  /** Copies the in-memory superblock (with `state`) into its cached block; returns that block. */
  private async storeSuperblock(): Promise<number> {
    const bs = this.sb.blockSize;
    const block = Math.floor(SUPERBLOCK_OFFSET / bs);
    const offset = SUPERBLOCK_OFFSET % bs;
    const data = await this.cache.get(block);
    storeSuperblock(this.sb, data.subarray(offset, offset + SUPERBLOCK_SIZE), seconds());
    this.cache.markDirty(block, "meta");
    this.alloc.superblockDirty = false;
    return block;
  }

  /**
   * Writes back everything dirty: the superblock marked "not clean" first (once), file
   * data, a flush, metadata, a flush; with `markClean` (sync) the superblock then says
   * "clean" again when it did at mount.
   */
  private async writeBack(markClean: boolean): Promise<void> {
    if (this.readOnly) return;
    const dirty = this.cache.dirtyBlocks > 0 || this.alloc.dirtyGroups.size > 0 || this.alloc.superblockDirty;
    const markable = markClean && this.cleanAtMount && !this.diskClean;
    if (!dirty && !markable) return;
    if (dirty && this.diskClean) {
      this.sb.state &= ~STATE_VALID;
      await this.cache.writeOne(await this.storeSuperblock());
      await this.device.flush();
      this.diskClean = false;
    }
    const table = descriptorTableBlock(this.sb);
    for (const g of this.alloc.dirtyGroups) {
      const byte = g * GROUP_DESC_SIZE;
      const block = table + Math.floor(byte / this.sb.blockSize);
      const data = await this.cache.get(block);
      storeGroupDescriptor(this.groups[g]!, data, byte % this.sb.blockSize);
      this.cache.markDirty(block, "meta");
    }
    this.alloc.dirtyGroups.clear();
    await this.storeSuperblock();
    await this.cache.writeDirty("data");
    await this.device.flush();
    await this.cache.writeDirty("meta");
    await this.device.flush();
    if (markClean && this.cleanAtMount) {
      this.sb.state |= STATE_VALID;
      await this.cache.writeOne(await this.storeSuperblock());
      await this.device.flush();
      this.diskClean = true;
    }
  }

  // --- file handle operations (called by Ext2FileHandle) ---

  /** @internal */
  handleStat(ino: number): Promise<FsStat> {
    return this.serial(async () => statOf(await this.inodes.get(ino)));
  }

  /** @internal */
  handleRead(ino: number, buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return this.serial(async () => {
      const inode = await this.inodes.get(ino);
      const size = inode.size;
      if (position >= size || length <= 0) return 0;
      const end = Math.min(size, position + length);
      const bs = this.sb.blockSize;
      const first = Math.floor(position / bs);
      const last = Math.floor((end - 1) / bs);
      const mapped: number[] = [];
      for (let fb = first; fb <= last; fb++) mapped.push((await this.inodes.map(inode, fb, false)).block);
      await this.cache.prefetch(mapped);
      let done = 0;
      for (let fb = first; fb <= last; fb++) {
        const start = fb === first ? position % bs : 0;
        const stop = fb === last ? end - fb * bs : bs;
        const target = buffer.subarray(offset + done, offset + done + (stop - start));
        const block = mapped[fb - first]!;
        if (block === 0) target.fill(0);
        else target.set((await this.cache.get(block)).subarray(start, stop));
        done += stop - start;
      }
      // relatime: update atime when it is older than the last change.
      if (!this.readOnly && inode.atime <= inode.mtime) {
        inode.touch("a", seconds());
        await this.inodes.save(inode);
      }
      return done;
    });
  }

  /** @internal */
  handleWrite(ino: number, buffer: Uint8Array, offset: number, length: number, position: number, append: boolean): Promise<number> {
    return this.serial(async () => {
      this.writable(`inode ${ino}`);
      const inode = await this.inodes.get(ino);
      if (append) position = inode.size;
      if (length <= 0) return 0;
      const bs = this.sb.blockSize;
      if (Math.ceil((position + length) / bs) > this.inodes.maxFileBlocks) throw ext2Error("EFBIG", "file too large");
      let done = 0;
      let failure: unknown = null;
      try {
        while (done < length) {
          const chunkEnd = Math.min(length, done + WRITE_CHUNK_BLOCKS * bs - ((position + done) % bs));
          while (done < chunkEnd) {
            const at = position + done;
            const fileBlock = Math.floor(at / bs);
            const start = at % bs;
            const count = Math.min(bs - start, length - done);
            const { block, fresh } = await this.inodes.map(inode, fileBlock, true);
            const whole = start === 0 && count === bs;
            const data = whole || fresh ? this.cache.getForOverwrite(block, !whole && !fresh) : await this.cache.get(block);
            data.set(buffer.subarray(offset + done, offset + done + count), start);
            this.cache.markDirty(block, "data");
            done += count;
          }
          this.finishWrite(inode, position + done);
          await this.inodes.save(inode);
          if (done < length) await this.cache.trim();
        }
      } catch (e) {
        failure = e;
      }
      this.finishWrite(inode, position + done);
      await this.inodes.save(inode);
      if (failure !== null && (done === 0 || !(failure instanceof FsError) || failure.code !== "ENOSPC")) throw failure;
      return done;
    });
  }

  private finishWrite(inode: Inode, end: number): void {
    if (end > inode.size) this.inodes.setSize(inode, end);
    inode.touch("mc", seconds());
  }

  private async truncateInode(inode: Inode, length: number): Promise<void> {
    const bs = this.sb.blockSize;
    if (Math.ceil(length / bs) > this.inodes.maxFileBlocks) throw ext2Error("EFBIG", "file too large");
    if (length < inode.size) {
      await this.inodes.freeFrom(inode, Math.ceil(length / bs));
      if (length % bs !== 0) {
        // Zero the tail of the last block, so that growing the file later reads zeros.
        const { block } = await this.inodes.map(inode, Math.floor(length / bs), false);
        if (block !== 0) {
          const data = await this.cache.get(block);
          data.fill(0, length % bs);
          this.cache.markDirty(block, "data");
        }
      }
    }
    this.inodes.setSize(inode, length);
    inode.touch("mc", seconds());
    await this.inodes.save(inode);
  }

  /** @internal */
  handleTruncate(ino: number, length: number): Promise<void> {
    return this.serial(async () => {
      this.writable(`inode ${ino}`);
      if (!Number.isInteger(length) || length < 0) throw ext2Error("EINVAL", `invalid length ${length}`);
      await this.truncateInode(await this.inodes.get(ino), length);
    });
  }

  /** @internal */
  handleClose(ino: number): Promise<void> {
    return this.serial(async () => {
      const count = (this.openCounts.get(ino) ?? 1) - 1;
      if (count > 0) {
        this.openCounts.set(ino, count);
        return;
      }
      this.openCounts.delete(ino);
      const inode = await this.inodes.get(ino);
      if (inode.links === 0 && !this.readOnly) await this.deleteInode(inode);
    });
  }
}

/** An open ext2 file. */
class Ext2FileHandle implements FileHandleOps {
  private closed = false;

  constructor(
    private readonly fs: Ext2FileSystem,
    private readonly ino: number,
    private readonly flags: OpenFlags,
    private readonly path: string,
  ) {}

  private check(writing: boolean): void {
    if (this.closed) throw ext2Error("EBADF", "file handle is closed", this.path);
    if (writing && !this.flags.write && !this.flags.append) throw ext2Error("EBADF", "file not open for writing", this.path);
  }

  async read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    this.check(false);
    if (!this.flags.read) throw ext2Error("EBADF", "file not open for reading", this.path);
    return this.fs.handleRead(this.ino, buffer, offset, Math.min(length, buffer.length - offset), position);
  }

  async write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    this.check(true);
    return this.fs.handleWrite(this.ino, buffer, offset, Math.min(length, buffer.length - offset), position, this.flags.append);
  }

  async stat(): Promise<FsStat> {
    this.check(false);
    return this.fs.handleStat(this.ino);
  }

  async truncate(length: number): Promise<void> {
    this.check(true);
    return this.fs.handleTruncate(this.ino, length);
  }

  async sync(): Promise<void> {
    this.check(false);
    return this.fs.syncAll();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    return this.fs.handleClose(this.ino);
  }
}

/**
 * Mounts the ext2 file system on `device` (a `blk.open()` handle or anything with the same
 * interface). Validates the superblock and group descriptors; throws FsError EINVAL/EIO
 * with the reason for an unusable image.
 */
export async function mountExt2(device: Ext2BlockDevice, options: Ext2MountOptions = {}): Promise<Ext2FileSystem> {
  const allocate = options.allocate ?? defaultAllocate;
  const log = options.log ?? ((message: string) => console.log(message));
  const diskBytes = device.capacity * 512;
  if (diskBytes < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE) throw ext2Error("EINVAL", `ext2: the disk is too small (${diskBytes} bytes)`);
  const raw = allocate(SUPERBLOCK_SIZE);
  await device.read(SUPERBLOCK_OFFSET / 512, raw);
  const sb = parseSuperblock(raw, diskBytes);
  const cacheBlocks = Math.max(64, Math.floor((options.cacheBytes ?? 8 << 20) / sb.blockSize));
  const cache = new BlockCache(device, sb.blockSize, cacheBlocks, allocate, sb.blocksCount);
  const groups: GroupDescriptor[] = [];
  const table = descriptorTableBlock(sb);
  for (let g = 0; g < sb.groupCount; g++) {
    const byte = g * GROUP_DESC_SIZE;
    const data = await cache.get(table + Math.floor(byte / sb.blockSize));
    groups.push(parseGroupDescriptor(sb, g, data, byte % sb.blockSize));
  }
  let reason = sb.readOnlyReason;
  if (reason === null && device.readOnly) reason = "the disk is read-only";
  if (reason === null && options.readOnly === true) reason = "mounted read-only on request";
  if (sb.readOnlyReason !== null) log(`ext2: ${sb.readOnlyReason}`);
  else if ((sb.state & STATE_VALID) === 0 && reason === null) log("ext2: warning: mounting a file system that was not cleanly unmounted; run e2fsck on the host");
  const fs = new Ext2FileSystem(device, sb, groups, cache, reason);
  const root = await fs.stat("");
  if (!root.isDirectory()) throw corrupted("the root inode is not a directory");
  return fs;
}
