/**
 * Block and inode allocation over the bitmaps. Every change updates the bitmap (in the
 * block cache), the group descriptor's free counts and the superblock's, together, so the
 * three agree whenever the cache is written back.
 *
 * Blocks are taken at or after a goal (the block after the file's previous one, else the
 * inode's group), so files stay contiguous; inodes of new files go to their directory's
 * group, new directories to a group with more free inodes than average.
 */
import type { BlockCache } from "./cache.ts";
import { corrupted, ext2Error } from "./errors.ts";
import type { GroupDescriptor, Superblock } from "./superblock.ts";

/** The allocator of one mounted file system. */
export class Allocator {
  /** Groups whose descriptor changed since the last write-back. */
  readonly dirtyGroups = new Set<number>();
  /** Whether the superblock's counters changed since the last write-back. */
  superblockDirty = false;

  constructor(
    private readonly sb: Superblock,
    private readonly groups: GroupDescriptor[],
    private readonly cache: BlockCache,
  ) {}

  /** The group that holds `block`. */
  groupOfBlock(block: number): number {
    return Math.floor((block - this.sb.firstDataBlock) / this.sb.blocksPerGroup);
  }

  /** The group that holds inode `ino`. */
  groupOfInode(ino: number): number {
    return Math.floor((ino - 1) / this.sb.inodesPerGroup);
  }

  /** First block of group `g`. */
  private groupStart(g: number): number {
    return this.sb.firstDataBlock + g * this.sb.blocksPerGroup;
  }

  /** Blocks in group `g` (the last group may be short). */
  private groupBlocks(g: number): number {
    return Math.min(this.sb.blocksPerGroup, this.sb.blocksCount - this.groupStart(g));
  }

  /** Finds and sets a clear bit in `bitmap` in [from, limit); -1 when none. */
  private static takeBit(bitmap: Uint8Array, from: number, limit: number): number {
    let bit = from;
    while (bit < limit) {
      const byte = bitmap[bit >> 3]!;
      if (byte === 0xff && (bit & 7) === 0) {
        bit += 8;
        continue;
      }
      if ((byte & (1 << (bit & 7))) === 0) {
        bitmap[bit >> 3] = byte | (1 << (bit & 7));
        return bit;
      }
      bit++;
    }
    return -1;
  }

  /** Allocates one block, at or after `goal` when possible. Throws ENOSPC when the disk is full. */
  async allocateBlock(goal: number): Promise<number> {
    const sb = this.sb;
    if (sb.freeBlocks === 0) throw ext2Error("ENOSPC", "no space left on device");
    if (!(goal >= sb.firstDataBlock && goal < sb.blocksCount)) goal = sb.firstDataBlock;
    const first = this.groupOfBlock(goal);
    for (let n = 0; n <= sb.groupCount; n++) {
      const g = (first + n) % sb.groupCount;
      const gd = this.groups[g]!;
      if (gd.freeBlocks === 0) continue;
      const bitmap = await this.cache.get(gd.blockBitmap);
      const limit = this.groupBlocks(g);
      const start = n === 0 ? goal - this.groupStart(g) : 0;
      let bit = Allocator.takeBit(bitmap, start, limit);
      if (bit < 0 && start > 0) bit = Allocator.takeBit(bitmap, 0, start);
      if (bit < 0) continue; // the descriptor's count was wrong; try the next group
      const block = this.groupStart(g) + bit;
      if (block === gd.blockBitmap || block === gd.inodeBitmap || (block >= gd.inodeTable && block < gd.inodeTable + sb.inodeTableBlocks)) {
        throw corrupted(`group ${g}: the block bitmap marks metadata block ${block} as free`);
      }
      this.cache.markDirty(gd.blockBitmap, "meta");
      gd.freeBlocks--;
      sb.freeBlocks--;
      this.dirtyGroups.add(g);
      this.superblockDirty = true;
      return block;
    }
    throw ext2Error("ENOSPC", "no space left on device");
  }

  /** Returns `block` to the free pool (and drops it from the cache). */
  async freeBlock(block: number): Promise<void> {
    const sb = this.sb;
    if (block < sb.firstDataBlock || block >= sb.blocksCount) throw corrupted(`freeing block ${block} outside the disk`);
    const g = this.groupOfBlock(block);
    const gd = this.groups[g]!;
    const bitmap = await this.cache.get(gd.blockBitmap);
    const bit = block - this.groupStart(g);
    const mask = 1 << (bit & 7);
    this.cache.forget(block);
    if ((bitmap[bit >> 3]! & mask) === 0) return; // already free: a corrupted pointer; keep the counts right
    bitmap[bit >> 3] = bitmap[bit >> 3]! & ~mask;
    this.cache.markDirty(gd.blockBitmap, "meta");
    gd.freeBlocks++;
    sb.freeBlocks++;
    this.dirtyGroups.add(g);
    this.superblockDirty = true;
  }

  /**
   * Allocates an inode: for a directory in a group with at least the average number of
   * free inodes (the one with most free blocks), for a file in `nearGroup` or the next
   * group with free inodes. Throws ENOSPC when none is left.
   */
  async allocateInode(nearGroup: number, directory: boolean): Promise<number> {
    const sb = this.sb;
    if (sb.freeInodes === 0) throw ext2Error("ENOSPC", "no free inodes left on device");
    const order: number[] = [];
    if (directory) {
      const average = sb.freeInodes / sb.groupCount;
      let best = -1;
      for (let g = 0; g < sb.groupCount; g++) {
        const gd = this.groups[g]!;
        if (gd.freeInodes === 0 || gd.freeInodes < average) continue;
        if (best < 0 || gd.freeBlocks > this.groups[best]!.freeBlocks) best = g;
      }
      if (best >= 0) order.push(best);
    }
    for (let n = 0; n < sb.groupCount; n++) order.push((nearGroup + n) % sb.groupCount);
    for (const g of order) {
      const gd = this.groups[g]!;
      if (gd.freeInodes === 0) continue;
      const bitmap = await this.cache.get(gd.inodeBitmap);
      const firstUsable = g === 0 ? sb.firstInode - 1 : 0;
      const bit = Allocator.takeBit(bitmap, firstUsable, sb.inodesPerGroup);
      if (bit < 0) continue;
      this.cache.markDirty(gd.inodeBitmap, "meta");
      gd.freeInodes--;
      if (directory) gd.usedDirs++;
      sb.freeInodes--;
      this.dirtyGroups.add(g);
      this.superblockDirty = true;
      return g * sb.inodesPerGroup + bit + 1;
    }
    throw ext2Error("ENOSPC", "no free inodes left on device");
  }

  /** Returns inode `ino` to the free pool. */
  async freeInode(ino: number, directory: boolean): Promise<void> {
    const sb = this.sb;
    const g = this.groupOfInode(ino);
    const gd = this.groups[g]!;
    const bitmap = await this.cache.get(gd.inodeBitmap);
    const bit = (ino - 1) % sb.inodesPerGroup;
    const mask = 1 << (bit & 7);
    if ((bitmap[bit >> 3]! & mask) === 0) return;
    bitmap[bit >> 3] = bitmap[bit >> 3]! & ~mask;
    this.cache.markDirty(gd.inodeBitmap, "meta");
    gd.freeInodes++;
    if (directory && gd.usedDirs > 0) gd.usedDirs--;
    sb.freeInodes++;
    this.dirtyGroups.add(g);
    this.superblockDirty = true;
  }

  /** Records a directory count change of the group holding `ino` (rename does not move inodes). */
  noteDirectory(ino: number, delta: number): void {
    const g = this.groupOfInode(ino);
    this.groups[g]!.usedDirs += delta;
    this.dirtyGroups.add(g);
  }
}
