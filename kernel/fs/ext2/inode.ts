/**
 * ext2 inodes: reading and writing them in the inode tables, and mapping a file's block
 * numbers to disk blocks through the direct, indirect, double- and triple-indirect
 * pointers (allocating on write, freeing on truncate and delete). i_blocks counts
 * 512-byte sectors, indirect blocks included.
 */
import type { Allocator } from "./alloc.ts";
import type { BlockCache } from "./cache.ts";
import { corrupted, ext2Error } from "./errors.ts";
import { RO_COMPAT_LARGE_FILE, type GroupDescriptor, type Superblock } from "./superblock.ts";

// Inode field offsets (struct ext2_inode).
const I_MODE = 0;          // u16 type and permissions
const I_UID = 2;           // u16
const I_SIZE = 4;          // u32 size, low 32 bits
const I_ATIME = 8;         // u32 seconds
const I_CTIME = 12;        // u32
const I_MTIME = 16;        // u32
const I_DTIME = 20;        // u32 deletion time
const I_GID = 24;          // u16
const I_LINKS_COUNT = 26;  // u16
const I_BLOCKS = 28;       // u32 512-byte sectors in use (data, indirect and xattr blocks)
const I_FLAGS = 32;        // u32
const I_BLOCK = 40;        // u32[15] block pointers: 12 direct, indirect, double, triple
const I_GENERATION = 100;  // u32
const I_FILE_ACL = 104;    // u32 extended attribute block
const I_SIZE_HIGH = 108;   // u32 size, high 32 bits (regular files, large_file)
const I_EXTRA_ISIZE = 128; // u16 bytes of fields after the 128-byte core (256-byte inodes)

// Extended attribute block header (struct ext2_xattr_header).
const XATTR_MAGIC_OFFSET = 0;    // u32 0xEA020000
const XATTR_REFCOUNT_OFFSET = 4; // u32 inodes sharing this block
const XATTR_MAGIC = 0xea020000;

/** i_mode file types. */
export const S_IFMT = 0xf000;
export const S_IFREG = 0x8000;
export const S_IFDIR = 0x4000;
export const S_IFLNK = 0xa000;

/** Inode flag: the directory has an htree index (dir_index); cleared when this driver changes it. */
export const EXT2_INDEX_FL = 0x1000;
/** Inode flags of ext4 layouts this driver cannot map. */
const EXT4_EXTENTS_FL = 0x80000;
const EXT4_INLINE_DATA_FL = 0x10000000;

/** Number of direct pointers, and indexes of the indirect roots in i_block. */
export const DIRECT_BLOCKS = 12;
const INDIRECT = 12;
const DOUBLE_INDIRECT = 13;
const TRIPLE_INDIRECT = 14;

/** The root directory's inode number. */
export const ROOT_INODE = 2;

/** One inode's bytes as kept in memory; setters change the copy, InodeTable.save() writes it. */
export class Inode {
  private readonly view: DataView;
  /** Disk block after the last one allocated for this file: the goal of the next allocation. */
  nextBlockGoal = 0;

  constructor(readonly ino: number, readonly raw: Uint8Array) {
    this.view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  }

  get mode(): number { return this.view.getUint16(I_MODE, true); }
  set mode(v: number) { this.view.setUint16(I_MODE, v, true); }
  get type(): number { return this.mode & S_IFMT; }
  get isDirectory(): boolean { return this.type === S_IFDIR; }
  get isFile(): boolean { return this.type === S_IFREG; }
  get isSymlink(): boolean { return this.type === S_IFLNK; }
  get links(): number { return this.view.getUint16(I_LINKS_COUNT, true); }
  set links(v: number) { this.view.setUint16(I_LINKS_COUNT, v, true); }
  get flags(): number { return this.view.getUint32(I_FLAGS, true); }
  set flags(v: number) { this.view.setUint32(I_FLAGS, v >>> 0, true); }
  get sectors(): number { return this.view.getUint32(I_BLOCKS, true); }
  set sectors(v: number) { this.view.setUint32(I_BLOCKS, v >>> 0, true); }
  get fileAcl(): number { return this.view.getUint32(I_FILE_ACL, true); }
  set fileAcl(v: number) { this.view.setUint32(I_FILE_ACL, v, true); }
  get mtime(): number { return this.view.getUint32(I_MTIME, true); }
  get atime(): number { return this.view.getUint32(I_ATIME, true); }

  /** File size; the high word counts for regular files only (for directories it is i_dir_acl). */
  get size(): number {
    const low = this.view.getUint32(I_SIZE, true);
    return this.isFile ? low + this.view.getUint32(I_SIZE_HIGH, true) * 0x100000000 : low;
  }
  set size(v: number) {
    this.view.setUint32(I_SIZE, v % 0x100000000, true);
    if (this.isFile) this.view.setUint32(I_SIZE_HIGH, Math.floor(v / 0x100000000), true);
  }

  /** Block pointer `i` of i_block (0..14). */
  pointer(i: number): number { return this.view.getUint32(I_BLOCK + 4 * i, true); }
  setPointer(i: number, block: number): void { this.view.setUint32(I_BLOCK + 4 * i, block, true); }

  /** Sets the times named in `which` to `seconds` (and clears their nanosecond extra fields). */
  touch(which: "a" | "m" | "c" | "mc" | "amc", seconds: number): void {
    const extra = this.raw.length > 128 ? this.view.getUint16(I_EXTRA_ISIZE, true) : 0;
    const set = (offset: number, extraOffset: number) => {
      this.view.setUint32(offset, seconds >>> 0, true);
      if (extra >= extraOffset - 128 + 4 && 128 + extra <= this.raw.length) this.view.setUint32(extraOffset, 0, true);
    };
    if (which.includes("a")) set(I_ATIME, 140);
    if (which.includes("m")) set(I_MTIME, 136);
    if (which.includes("c")) set(I_CTIME, 132);
  }

  /** Fills a freshly allocated inode: type and permissions, one or two links, times now. */
  initialise(mode: number, links: number, seconds: number, generation: number): void {
    this.raw.fill(0);
    this.mode = mode;
    this.links = links;
    this.view.setUint16(I_UID, 0, true);
    this.view.setUint16(I_GID, 0, true);
    this.view.setUint32(I_GENERATION, generation >>> 0, true);
    // 256-byte inodes: declare the 32 extra bytes mke2fs uses (times' nanoseconds, crtime).
    if (this.raw.length >= 160) {
      this.view.setUint16(I_EXTRA_ISIZE, 32, true);
      this.view.setUint32(144, seconds >>> 0, true); // i_crtime
    }
    this.touch("amc", seconds);
  }

  /** Marks the inode deleted (links 0, dtime set), as Linux leaves freed inodes. */
  markDeleted(seconds: number): void {
    this.links = 0;
    this.view.setUint32(I_DTIME, seconds >>> 0, true);
  }
}

/** Inode table access and block mapping for one mounted file system. */
export class InodeTable {
  private readonly loaded = new Map<number, Inode>();
  private readonly pointersPerBlock: number;
  private readonly sectorsPerBlock: number;
  /** Largest number of file blocks the pointer tree addresses. */
  readonly maxFileBlocks: number;

  constructor(
    private readonly sb: Superblock,
    private readonly groups: GroupDescriptor[],
    private readonly cache: BlockCache,
    private readonly alloc: Allocator,
  ) {
    this.pointersPerBlock = sb.blockSize / 4;
    this.sectorsPerBlock = sb.blockSize / 512;
    const p = this.pointersPerBlock;
    // i_blocks is 32 bits of sectors: that bounds files too (2 TiB).
    this.maxFileBlocks = Math.min(DIRECT_BLOCKS + p + p * p + p * p * p, Math.floor(0xffffffff / this.sectorsPerBlock));
  }

  private location(ino: number): { block: number; offset: number } {
    const sb = this.sb;
    if (!Number.isInteger(ino) || ino < 1 || ino > sb.inodesCount) throw corrupted(`inode number ${ino} is outside 1..${sb.inodesCount}`);
    const group = Math.floor((ino - 1) / sb.inodesPerGroup);
    const index = (ino - 1) % sb.inodesPerGroup;
    const byte = index * sb.inodeSize;
    return { block: this.groups[group]!.inodeTable + Math.floor(byte / sb.blockSize), offset: byte % sb.blockSize };
  }

  /** Inode `ino` (validated number; its contents are checked by the caller's use). */
  async get(ino: number): Promise<Inode> {
    const known = this.loaded.get(ino);
    if (known !== undefined) return known;
    const { block, offset } = this.location(ino);
    const data = await this.cache.get(block);
    const inode = new Inode(ino, data.slice(offset, offset + this.sb.inodeSize));
    const flags = inode.flags;
    if ((inode.isFile || inode.isDirectory || inode.isSymlink) && (flags & (EXT4_EXTENTS_FL | EXT4_INLINE_DATA_FL)) !== 0) {
      throw ext2Error("EINVAL", `ext2: inode ${ino} uses ext4 extents or inline data, which ext2 does not support`);
    }
    if (this.loaded.size >= 4096) {
      const oldest = this.loaded.keys().next().value;
      if (oldest !== undefined) this.loaded.delete(oldest);
    }
    this.loaded.set(ino, inode);
    return inode;
  }

  /** Writes the in-memory inode into its inode table block (in the cache). */
  async save(inode: Inode): Promise<void> {
    const { block, offset } = this.location(inode.ino);
    const data = await this.cache.get(block);
    data.set(inode.raw, offset);
    this.cache.markDirty(block, "meta");
  }

  /** A fresh in-memory inode for a just-allocated number (not read from disk). */
  fresh(ino: number): Inode {
    const inode = new Inode(ino, new Uint8Array(this.sb.inodeSize));
    this.loaded.delete(ino);
    this.loaded.set(ino, inode);
    return inode;
  }

  /** A symlink whose target lives in i_block itself (no data block to map or free). */
  isFastSymlink(inode: Inode): boolean {
    return inode.isSymlink && inode.sectors === (inode.fileAcl !== 0 ? this.sectorsPerBlock : 0);
  }

  /** Updates the size, turning on large_file when a file passes 2 GiB. */
  setSize(inode: Inode, size: number): void {
    if (size >= 0x80000000 && (this.sb.featureRoCompat & RO_COMPAT_LARGE_FILE) === 0) {
      this.sb.featureRoCompat |= RO_COMPAT_LARGE_FILE;
      this.alloc.superblockDirty = true;
    }
    inode.size = size;
  }

  private checkPointer(inode: Inode, block: number): void {
    if (block !== 0 && (block < this.sb.firstDataBlock || block >= this.sb.blocksCount)) {
      throw corrupted(`inode ${inode.ino}: block pointer ${block} is outside the disk (${this.sb.blocksCount} blocks)`);
    }
  }

  private async allocateFor(inode: Inode): Promise<number> {
    let goal = inode.nextBlockGoal;
    if (goal === 0) goal = this.sb.firstDataBlock + this.alloc.groupOfInode(inode.ino) * this.sb.blocksPerGroup;
    const block = await this.alloc.allocateBlock(goal);
    inode.sectors = inode.sectors + this.sectorsPerBlock;
    inode.nextBlockGoal = block + 1;
    return block;
  }

  /**
   * The disk block holding file block `fileBlock` of `inode`; 0 for a hole. With
   * `allocate`, missing blocks (and indirect blocks on the way) are allocated: `fresh`
   * then says the data block is new (its cached buffer is zeroed; mark it dirty).
   * The caller saves the inode.
   */
  async map(inode: Inode, fileBlock: number, allocate: boolean): Promise<{ block: number; fresh: boolean }> {
    const p = this.pointersPerBlock;
    if (fileBlock < 0 || fileBlock >= this.maxFileBlocks) throw ext2Error("EFBIG", `file too large (block ${fileBlock})`);
    let root: number;
    let levels: number;
    let index = fileBlock;
    if (index < DIRECT_BLOCKS) {
      root = index;
      levels = 0;
    } else if ((index -= DIRECT_BLOCKS) < p) {
      root = INDIRECT;
      levels = 1;
    } else if ((index -= p) < p * p) {
      root = DOUBLE_INDIRECT;
      levels = 2;
    } else {
      index -= p * p;
      root = TRIPLE_INDIRECT;
      levels = 3;
    }
    let block = inode.pointer(root);
    this.checkPointer(inode, block);
    let fresh = false;
    if (block === 0) {
      if (!allocate) return { block: 0, fresh: false };
      block = await this.allocateFor(inode);
      inode.setPointer(root, block);
      fresh = true;
      this.cache.getForOverwrite(block, true);
      if (levels > 0) this.cache.markDirty(block, "meta");
    }
    for (let level = levels; level > 0; level--) {
      const span = p ** (level - 1);
      const slot = Math.floor(index / span) % p;
      const table = await this.cache.get(block);
      const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
      let next = view.getUint32(4 * slot, true);
      this.checkPointer(inode, next);
      fresh = false;
      if (next === 0) {
        if (!allocate) return { block: 0, fresh: false };
        next = await this.allocateFor(inode);
        view.setUint32(4 * slot, next, true);
        this.cache.markDirty(block, "meta");
        this.cache.getForOverwrite(next, true);
        if (level > 1) this.cache.markDirty(next, "meta");
        fresh = true;
      }
      block = next;
    }
    if (!fresh && allocate) inode.nextBlockGoal = block + 1;
    return { block, fresh };
  }

  /** Frees every data and indirect block of `inode` from file block `keep` on; the caller saves it. */
  async freeFrom(inode: Inode, keep: number): Promise<void> {
    if (this.isFastSymlink(inode)) return;
    const p = this.pointersPerBlock;
    for (let i = Math.max(keep, 0); i < DIRECT_BLOCKS; i++) {
      const block = inode.pointer(i);
      if (block === 0) continue;
      this.checkPointer(inode, block);
      await this.release(inode, block);
      inode.setPointer(i, 0);
    }
    let start = DIRECT_BLOCKS;
    const roots: [number, number, number][] = [[INDIRECT, 1, p], [DOUBLE_INDIRECT, 2, p * p], [TRIPLE_INDIRECT, 3, p * p * p]];
    for (const [root, levels, span] of roots) {
      const from = Math.max(0, keep - start);
      start += span;
      const block = inode.pointer(root);
      if (block === 0 || from >= span) continue;
      this.checkPointer(inode, block);
      if (await this.freeTree(inode, block, levels, from)) {
        await this.release(inode, block);
        inode.setPointer(root, 0);
      }
    }
    inode.nextBlockGoal = 0;
  }

  private async release(inode: Inode, block: number): Promise<void> {
    await this.alloc.freeBlock(block);
    inode.sectors = Math.max(0, inode.sectors - this.sectorsPerBlock);
  }

  /** Frees the blocks of the subtree under indirect block `table` from data index `from`; true when it is now empty. */
  private async freeTree(inode: Inode, table: number, levels: number, from: number): Promise<boolean> {
    const p = this.pointersPerBlock;
    const span = p ** (levels - 1);
    const data = await this.cache.get(table);
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const first = Math.floor(from / span);
    let changed = false;
    for (let slot = first; slot < p; slot++) {
      const child = view.getUint32(4 * slot, true);
      if (child === 0) continue;
      this.checkPointer(inode, child);
      const childFrom = slot === first ? from - slot * span : 0;
      if (levels === 1 || (await this.freeTree(inode, child, levels - 1, childFrom))) {
        await this.release(inode, child);
        view.setUint32(4 * slot, 0, true);
        changed = true;
      }
    }
    if (changed && from > 0) this.cache.markDirty(table, "meta");
    if (from === 0) return true;
    for (let slot = 0; slot <= first && slot < p; slot++) if (view.getUint32(4 * slot, true) !== 0) return false;
    return true;
  }

  /** Drops the inode's extended attribute block reference (freeing the block when unshared). */
  async releaseXattrBlock(inode: Inode): Promise<void> {
    const block = inode.fileAcl;
    if (block === 0) return;
    this.checkPointer(inode, block);
    inode.fileAcl = 0;
    inode.sectors = Math.max(0, inode.sectors - this.sectorsPerBlock);
    const data = await this.cache.get(block);
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const refs = view.getUint32(XATTR_REFCOUNT_OFFSET, true);
    if (view.getUint32(XATTR_MAGIC_OFFSET, true) === XATTR_MAGIC && refs > 1) {
      view.setUint32(XATTR_REFCOUNT_OFFSET, refs - 1, true);
      this.cache.markDirty(block, "meta");
    } else {
      await this.alloc.freeBlock(block);
    }
  }

  /** Forgets the in-memory copy of a freed inode. */
  drop(ino: number): void {
    this.loaded.delete(ino);
  }
}
