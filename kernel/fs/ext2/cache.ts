/**
 * The block cache of one mounted ext2 file system (one per core, like the device): whole
 * file-system blocks keyed by block number, least recently used first, with dirty
 * tracking and write-back.
 *
 * Nothing is evicted while an operation runs: `get` never drops a block, so a buffer an
 * operation holds stays the cached one. The file system calls `trim()` between
 * operations (and between chunks of a large write); it drops clean blocks, oldest first,
 * and when only dirty ones are left it asks the file system to write back first.
 *
 * Write-back is ordered: file data first, then metadata (bitmaps, inode tables,
 * directories, indirect blocks), each in ascending block order, contiguous runs merged
 * into one device request. Buffers come from `allocate` (DMA memory in the guest), so the
 * driver sends them to the device without copies.
 */
import { corrupted } from "./errors.ts";

/** The block device interface the driver needs: the subset of `blk.open()`'s handle. */
export interface Ext2BlockDevice {
  /** Size in 512-byte sectors. */
  readonly capacity: number;
  readonly readOnly: boolean;
  read(sector: number, countOrInto: number | Uint8Array): Promise<Uint8Array>;
  write(sector: number, data: Uint8Array): Promise<void>;
  flush(): Promise<void>;
}

/** Whether a dirty block holds file data or file-system metadata (written after data). */
export type BlockKind = "data" | "meta";

interface CachedBlock {
  data: Uint8Array;
  dirty: BlockKind | null;
}

/** The largest device request write-back and read-ahead build, in bytes. */
const MAX_RUN_BYTES = 128 * 1024;
const SECTOR = 512;

/** Counters for diagnostics and benchmarks. */
export interface CacheStats {
  hits: number;
  misses: number;
  deviceReads: number;
  deviceWrites: number;
  blocksWritten: number;
  evictions: number;
}

/** The write-back block cache of one file system. */
export class BlockCache {
  private readonly blocks = new Map<number, CachedBlock>();
  private dirtyCount = 0;
  private readonly sectorsPerBlock: number;
  private readonly maxRunBlocks: number;
  readonly stats: CacheStats = { hits: 0, misses: 0, deviceReads: 0, deviceWrites: 0, blocksWritten: 0, evictions: 0 };
  /** Called by trim() when the cache is over its limit with only dirty blocks left. */
  onPressure: () => Promise<void> = () => this.writeBack();

  constructor(
    private readonly device: Ext2BlockDevice,
    readonly blockSize: number,
    /** Number of blocks limit (soft: exceeded within one operation, restored by trim()). */
    private readonly maxBlocks: number,
    private readonly allocate: (bytes: number) => Uint8Array,
    /** Number of blocks of the file system: reads and writes beyond are refused. */
    private readonly totalBlocks: number,
  ) {
    this.sectorsPerBlock = blockSize / SECTOR;
    this.maxRunBlocks = Math.max(1, Math.floor(MAX_RUN_BYTES / blockSize));
  }

  /** Number of cached blocks, and of dirty ones. */
  get size(): number {
    return this.blocks.size;
  }
  get dirtyBlocks(): number {
    return this.dirtyCount;
  }

  private check(block: number): void {
    if (!Number.isInteger(block) || block < 0 || block >= this.totalBlocks) {
      throw corrupted(`block ${block} is outside the file system (${this.totalBlocks} blocks)`);
    }
  }

  private touch(block: number, entry: CachedBlock): void {
    this.blocks.delete(block);
    this.blocks.set(block, entry);
  }

  /** The cached contents of `block`, read from the device when absent. Modify, then call markDirty. */
  async get(block: number): Promise<Uint8Array> {
    const entry = this.blocks.get(block);
    if (entry !== undefined) {
      this.stats.hits++;
      this.touch(block, entry);
      return entry.data;
    }
    this.check(block);
    this.stats.misses++;
    this.stats.deviceReads++;
    const data = this.allocate(this.blockSize);
    await this.device.read(block * this.sectorsPerBlock, data);
    // Another task may have cached it meanwhile (the file system serialises, but be safe).
    const raced = this.blocks.get(block);
    if (raced !== undefined) return raced.data;
    this.blocks.set(block, { data, dirty: null });
    return data;
  }

  /**
   * Makes sure every block in `list` is cached, reading missing contiguous runs with one
   * device request each (read-ahead for sequential file reads).
   */
  async prefetch(list: readonly number[]): Promise<void> {
    const missing = [...new Set(list.filter((b) => b !== 0 && !this.blocks.has(b)))].sort((a, b) => a - b);
    const reads: Promise<void>[] = [];
    let i = 0;
    while (i < missing.length) {
      let j = i + 1;
      while (j < missing.length && j - i < this.maxRunBlocks && missing[j] === missing[j - 1]! + 1) j++;
      const first = missing[i]!;
      const count = j - i;
      this.check(first);
      this.check(first + count - 1);
      reads.push(this.readRun(first, count));
      i = j;
    }
    await Promise.all(reads);
  }

  private async readRun(first: number, count: number): Promise<void> {
    const buffer = this.allocate(count * this.blockSize);
    this.stats.deviceReads++;
    this.stats.misses += count;
    await this.device.read(first * this.sectorsPerBlock, buffer);
    for (let k = 0; k < count; k++) {
      if (this.blocks.has(first + k)) continue;
      const data = count === 1 ? buffer : this.allocate(this.blockSize);
      if (count !== 1) data.set(buffer.subarray(k * this.blockSize, (k + 1) * this.blockSize));
      this.blocks.set(first + k, { data, dirty: null });
    }
  }

  /**
   * A buffer for `block` that the caller overwrites completely (a newly allocated block,
   * or a whole-block file write): the cached one if present, else a zeroed one without
   * reading the device. The caller marks it dirty.
   */
  getForOverwrite(block: number, zero: boolean): Uint8Array {
    const entry = this.blocks.get(block);
    if (entry !== undefined) {
      this.touch(block, entry);
      if (zero) entry.data.fill(0);
      return entry.data;
    }
    this.check(block);
    const data = this.allocate(this.blockSize);
    this.blocks.set(block, { data, dirty: null });
    return data;
  }

  /** Marks the cached `block` as modified; `kind` decides its place in write-back. */
  markDirty(block: number, kind: BlockKind): void {
    const entry = this.blocks.get(block);
    if (entry === undefined) throw new Error(`ext2 cache: block ${block} marked dirty but not cached`);
    if (entry.dirty === null) this.dirtyCount++;
    if (entry.dirty !== "meta") entry.dirty = kind;
  }

  /** Drops `block` without writing it (the block was freed). */
  forget(block: number): void {
    const entry = this.blocks.get(block);
    if (entry === undefined) return;
    if (entry.dirty !== null) this.dirtyCount--;
    this.blocks.delete(block);
  }

  /** Writes dirty blocks of `kind` (or all) in ascending order, contiguous runs merged; no flush. */
  async writeDirty(kind?: BlockKind): Promise<void> {
    const list: number[] = [];
    for (const [block, entry] of this.blocks) {
      if (entry.dirty !== null && (kind === undefined || entry.dirty === kind)) list.push(block);
    }
    list.sort((a, b) => a - b);
    const writes: Promise<void>[] = [];
    let i = 0;
    while (i < list.length) {
      let j = i + 1;
      while (j < list.length && j - i < this.maxRunBlocks && list[j] === list[j - 1]! + 1) j++;
      const first = list[i]!;
      const count = j - i;
      let buffer: Uint8Array;
      if (count === 1) {
        buffer = this.blocks.get(first)!.data;
      } else {
        buffer = this.allocate(count * this.blockSize);
        for (let k = 0; k < count; k++) buffer.set(this.blocks.get(first + k)!.data, k * this.blockSize);
      }
      for (let k = 0; k < count; k++) this.blocks.get(first + k)!.dirty = null;
      this.dirtyCount -= count;
      this.stats.deviceWrites++;
      this.stats.blocksWritten += count;
      writes.push(this.device.write(first * this.sectorsPerBlock, buffer).catch((e: unknown) => {
        // Keep the blocks dirty so that a later sync retries; report the failure.
        for (let k = 0; k < count; k++) {
          const entry = this.blocks.get(first + k);
          if (entry !== undefined && entry.dirty === null) {
            entry.dirty = "meta";
            this.dirtyCount++;
          }
        }
        throw e;
      }));
      i = j;
    }
    const results = await Promise.allSettled(writes);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed !== undefined) throw failed.reason;
  }

  /** Writes one cached block now if it is dirty (no flush). */
  async writeOne(block: number): Promise<void> {
    const entry = this.blocks.get(block);
    if (entry === undefined || entry.dirty === null) return;
    entry.dirty = null;
    this.dirtyCount--;
    this.stats.deviceWrites++;
    this.stats.blocksWritten++;
    await this.device.write(block * this.sectorsPerBlock, entry.data);
  }

  /** Plain write-back: data, then metadata, then a device flush. */
  async writeBack(): Promise<void> {
    await this.writeDirty("data");
    await this.writeDirty("meta");
    await this.device.flush();
  }

  /** Restores the size limit: drops clean blocks, least recently used first; writes back when needed. */
  async trim(): Promise<void> {
    if (this.blocks.size <= this.maxBlocks) return;
    if (this.blocks.size - this.dirtyCount <= this.blocks.size - this.maxBlocks || this.dirtyCount > this.maxBlocks / 2) {
      await this.onPressure();
    }
    let excess = this.blocks.size - this.maxBlocks;
    for (const [block, entry] of this.blocks) {
      if (excess <= 0) break;
      if (entry.dirty !== null) continue;
      this.blocks.delete(block);
      this.stats.evictions++;
      excess--;
    }
  }
}
