/**
 * The ext2 superblock and block group descriptors: parsing, validation against the disk's
 * size, feature checks, and serialisation of the fields the driver changes (free counts,
 * state, write time, features).
 *
 * Layout (all little-endian): the superblock is 1024 bytes at byte 1024 of the disk; the
 * group descriptor table starts in the block after the one holding the superblock
 * (block s_first_data_block + 1), 32 bytes per group.
 */
import { corrupted, ext2Error } from "./errors.ts";

/** Byte offset of the superblock on the disk, and its size. */
export const SUPERBLOCK_OFFSET = 1024;
export const SUPERBLOCK_SIZE = 1024;

// Superblock field offsets (struct ext2_super_block).
const S_INODES_COUNT = 0;        // u32 inodes in the file system
const S_BLOCKS_COUNT = 4;        // u32 blocks in the file system
const S_R_BLOCKS_COUNT = 8;      // u32 blocks reserved for root
const S_FREE_BLOCKS_COUNT = 12;  // u32
const S_FREE_INODES_COUNT = 16;  // u32
const S_FIRST_DATA_BLOCK = 20;   // u32 block holding the superblock (1 with 1 KiB blocks, else 0)
const S_LOG_BLOCK_SIZE = 24;     // u32 block size = 1024 << this
const S_BLOCKS_PER_GROUP = 32;   // u32
const S_INODES_PER_GROUP = 40;   // u32
const S_WTIME = 48;              // u32 last write time
const S_MAGIC = 56;              // u16 0xEF53
const S_STATE = 58;              // u16 1 = cleanly unmounted, 2 = errors detected
const S_REV_LEVEL = 76;          // u32 0 = original, 1 = dynamic inode sizes and features
const S_FIRST_INO = 84;          // u32 first non-reserved inode (rev 1)
const S_INODE_SIZE = 88;         // u16 (rev 1)
const S_FEATURE_COMPAT = 92;     // u32
const S_FEATURE_INCOMPAT = 96;   // u32
const S_FEATURE_RO_COMPAT = 100; // u32
const S_VOLUME_NAME = 120;       // char[16]

/** The magic number at S_MAGIC. */
export const EXT2_MAGIC = 0xef53;
/** s_state bits. */
export const STATE_VALID = 1;
export const STATE_ERRORS = 2;

// Feature flags.
export const COMPAT_HAS_JOURNAL = 0x4;
export const INCOMPAT_FILETYPE = 0x2;
export const INCOMPAT_RECOVER = 0x4;
export const INCOMPAT_JOURNAL_DEV = 0x8;
export const RO_COMPAT_SPARSE_SUPER = 0x1;
export const RO_COMPAT_LARGE_FILE = 0x2;
/** ro_compat features this driver keeps consistent when writing (others: read-only). */
const RO_COMPAT_WRITABLE = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | 0x4 /* BTREE_DIR, never used */;
/** incompat features this driver understands (others: refuse to mount). */
const INCOMPAT_SUPPORTED = INCOMPAT_FILETYPE | INCOMPAT_RECOVER;

const INCOMPAT_NAMES: Record<number, string> = {
  0x1: "compression", 0x8: "journal_dev", 0x10: "meta_bg", 0x40: "extents", 0x80: "64bit", 0x100: "mmp",
  0x200: "flex_bg", 0x400: "ea_inode", 0x1000: "dirdata", 0x2000: "metadata_csum_seed", 0x4000: "large_dir",
  0x8000: "inline_data", 0x10000: "encrypt", 0x20000: "casefold",
};
const RO_COMPAT_NAMES: Record<number, string> = {
  0x8: "huge_file", 0x10: "uninit_bg", 0x20: "dir_nlink", 0x40: "extra_isize", 0x100: "quota", 0x200: "bigalloc",
  0x400: "metadata_csum", 0x1000: "readonly", 0x2000: "project", 0x8000: "verity", 0x10000: "orphan_present",
};

// Group descriptor field offsets (struct ext2_group_desc, 32 bytes).
export const GROUP_DESC_SIZE = 32;
const BG_BLOCK_BITMAP = 0;       // u32 block of the block bitmap
const BG_INODE_BITMAP = 4;       // u32 block of the inode bitmap
const BG_INODE_TABLE = 8;        // u32 first block of the inode table
const BG_FREE_BLOCKS_COUNT = 12; // u16
const BG_FREE_INODES_COUNT = 14; // u16
const BG_USED_DIRS_COUNT = 16;   // u16

/** One block group's descriptor, as kept in memory. */
export interface GroupDescriptor {
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  freeBlocks: number;
  freeInodes: number;
  usedDirs: number;
}

/** The superblock fields the driver uses, parsed and validated. */
export interface Superblock {
  inodesCount: number;
  blocksCount: number;
  reservedBlocks: number;
  freeBlocks: number;
  freeInodes: number;
  firstDataBlock: number;
  blockSize: number;
  blocksPerGroup: number;
  inodesPerGroup: number;
  state: number;
  revision: number;
  firstInode: number;
  inodeSize: number;
  featureCompat: number;
  featureIncompat: number;
  featureRoCompat: number;
  volumeName: string;
  groupCount: number;
  /** Blocks of the group descriptor table. */
  descriptorBlocks: number;
  /** Blocks of one group's inode table. */
  inodeTableBlocks: number;
  /** Why the file system must be mounted read-only, or null when it can be written. */
  readOnlyReason: string | null;
}

function featureList(bits: number, names: Record<number, string>): string {
  const out: string[] = [];
  for (let bit = 1; bit !== 0 && bit <= 0x80000000; bit = (bit << 1) >>> 0) {
    if ((bits & bit) !== 0) out.push(names[bit] ?? `0x${bit.toString(16)}`);
  }
  return out.join(", ");
}

/**
 * Parses and validates the superblock in `bytes` (the 1024 bytes at disk byte 1024) for a
 * disk of `diskBytes` bytes. Throws EINVAL with the field at fault.
 */
export function parseSuperblock(bytes: Uint8Array, diskBytes: number): Superblock {
  const v = new DataView(bytes.buffer, bytes.byteOffset, SUPERBLOCK_SIZE);
  const bad = (what: string) => ext2Error("EINVAL", `ext2: not a usable ext2 file system: ${what}`);
  const magic = v.getUint16(S_MAGIC, true);
  if (magic !== EXT2_MAGIC) throw bad(`bad magic 0x${magic.toString(16)} (expected 0xef53)`);
  const log = v.getUint32(S_LOG_BLOCK_SIZE, true);
  if (log > 6) throw bad(`block size 1024 << ${log} is outside 1 KiB..64 KiB`);
  const blockSize = 1024 << log;
  const revision = v.getUint32(S_REV_LEVEL, true);
  if (revision > 1) throw bad(`revision ${revision} is unknown`);
  const inodeSize = revision === 0 ? 128 : v.getUint16(S_INODE_SIZE, true);
  if (inodeSize < 128 || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0) throw bad(`inode size ${inodeSize}`);
  const firstInode = revision === 0 ? 11 : v.getUint32(S_FIRST_INO, true);
  const sb: Superblock = {
    inodesCount: v.getUint32(S_INODES_COUNT, true),
    blocksCount: v.getUint32(S_BLOCKS_COUNT, true),
    reservedBlocks: v.getUint32(S_R_BLOCKS_COUNT, true),
    freeBlocks: v.getUint32(S_FREE_BLOCKS_COUNT, true),
    freeInodes: v.getUint32(S_FREE_INODES_COUNT, true),
    firstDataBlock: v.getUint32(S_FIRST_DATA_BLOCK, true),
    blockSize,
    blocksPerGroup: v.getUint32(S_BLOCKS_PER_GROUP, true),
    inodesPerGroup: v.getUint32(S_INODES_PER_GROUP, true),
    state: v.getUint16(S_STATE, true),
    revision,
    firstInode,
    inodeSize,
    featureCompat: revision === 0 ? 0 : v.getUint32(S_FEATURE_COMPAT, true),
    featureIncompat: revision === 0 ? 0 : v.getUint32(S_FEATURE_INCOMPAT, true),
    featureRoCompat: revision === 0 ? 0 : v.getUint32(S_FEATURE_RO_COMPAT, true),
    volumeName: "",
    groupCount: 0,
    descriptorBlocks: 0,
    inodeTableBlocks: 0,
    readOnlyReason: null,
  };
  for (let i = 0; i < 16 && bytes[S_VOLUME_NAME + i] !== 0; i++) sb.volumeName += String.fromCharCode(bytes[S_VOLUME_NAME + i]!);

  const diskBlocks = Math.floor(diskBytes / blockSize);
  if (sb.blocksCount === 0) throw bad("s_blocks_count is 0");
  if (sb.blocksCount > diskBlocks) throw bad(`it has ${sb.blocksCount} blocks of ${blockSize} bytes but the disk holds only ${diskBlocks}`);
  if (sb.firstDataBlock !== (blockSize === 1024 ? 1 : 0)) throw bad(`s_first_data_block ${sb.firstDataBlock} does not match the block size ${blockSize}`);
  if (sb.blocksPerGroup === 0 || sb.blocksPerGroup > 8 * blockSize) throw bad(`s_blocks_per_group ${sb.blocksPerGroup} (at most ${8 * blockSize})`);
  if (sb.inodesPerGroup === 0 || sb.inodesPerGroup > 8 * blockSize) throw bad(`s_inodes_per_group ${sb.inodesPerGroup} (at most ${8 * blockSize})`);
  sb.groupCount = Math.ceil((sb.blocksCount - sb.firstDataBlock) / sb.blocksPerGroup);
  if (sb.inodesCount !== sb.groupCount * sb.inodesPerGroup) {
    throw bad(`s_inodes_count ${sb.inodesCount} is not ${sb.groupCount} groups x ${sb.inodesPerGroup} inodes`);
  }
  if (sb.freeBlocks > sb.blocksCount) throw bad(`s_free_blocks_count ${sb.freeBlocks} > s_blocks_count ${sb.blocksCount}`);
  if (sb.freeInodes > sb.inodesCount) throw bad(`s_free_inodes_count ${sb.freeInodes} > s_inodes_count ${sb.inodesCount}`);
  if (sb.firstInode < 11 || sb.firstInode >= sb.inodesCount) throw bad(`s_first_ino ${sb.firstInode}`);
  sb.descriptorBlocks = Math.ceil((sb.groupCount * GROUP_DESC_SIZE) / blockSize);
  sb.inodeTableBlocks = Math.ceil((sb.inodesPerGroup * inodeSize) / blockSize);

  const unsupported = sb.featureIncompat & ~INCOMPAT_SUPPORTED;
  if (unsupported !== 0) {
    throw ext2Error("EINVAL", `ext2: cannot mount: unsupported incompatible features: ${featureList(unsupported, INCOMPAT_NAMES)} (ext4 images are not supported; make the disk with mke2fs -t ext2)`);
  }
  const journal = (sb.featureCompat & COMPAT_HAS_JOURNAL) !== 0;
  if ((sb.featureIncompat & INCOMPAT_RECOVER) !== 0) {
    sb.readOnlyReason = journal
      ? "ext3 journal needs recovery (the file system was not unmounted cleanly); mounted read-only without replaying it, so recent changes may be missing: run e2fsck on the host"
      : "the needs_recovery flag is set without a journal";
  } else if (journal) {
    sb.readOnlyReason = "ext3 file system (has_journal): mounted read-only, since this driver does not write the journal";
  } else if ((sb.featureRoCompat & ~RO_COMPAT_WRITABLE) !== 0) {
    sb.readOnlyReason = `read-only compatible features this driver does not maintain: ${featureList(sb.featureRoCompat & ~RO_COMPAT_WRITABLE, RO_COMPAT_NAMES)}`;
  } else if ((sb.state & STATE_ERRORS) !== 0) {
    sb.readOnlyReason = "the file system is marked as having errors; mounted read-only: run e2fsck on the host";
  }
  return sb;
}

/** Writes the fields the driver changes back into the 1024 superblock bytes. */
export function storeSuperblock(sb: Superblock, bytes: Uint8Array, nowSeconds: number): void {
  const v = new DataView(bytes.buffer, bytes.byteOffset, SUPERBLOCK_SIZE);
  v.setUint32(S_FREE_BLOCKS_COUNT, sb.freeBlocks, true);
  v.setUint32(S_FREE_INODES_COUNT, sb.freeInodes, true);
  v.setUint16(S_STATE, sb.state, true);
  v.setUint32(S_WTIME, nowSeconds >>> 0, true);
  if (sb.revision >= 1) v.setUint32(S_FEATURE_RO_COMPAT, sb.featureRoCompat, true);
}

/** Block number of the first group descriptor table block. */
export function descriptorTableBlock(sb: Superblock): number {
  return sb.firstDataBlock + 1;
}

/** Parses group `index`'s descriptor at `bytes[offset..]` and checks it against the layout. */
export function parseGroupDescriptor(sb: Superblock, index: number, bytes: Uint8Array, offset: number): GroupDescriptor {
  const v = new DataView(bytes.buffer, bytes.byteOffset + offset, GROUP_DESC_SIZE);
  const gd: GroupDescriptor = {
    blockBitmap: v.getUint32(BG_BLOCK_BITMAP, true),
    inodeBitmap: v.getUint32(BG_INODE_BITMAP, true),
    inodeTable: v.getUint32(BG_INODE_TABLE, true),
    freeBlocks: v.getUint16(BG_FREE_BLOCKS_COUNT, true),
    freeInodes: v.getUint16(BG_FREE_INODES_COUNT, true),
    usedDirs: v.getUint16(BG_USED_DIRS_COUNT, true),
  };
  const inside = (b: number) => b >= sb.firstDataBlock && b < sb.blocksCount;
  if (!inside(gd.blockBitmap)) throw corrupted(`group ${index}: block bitmap at block ${gd.blockBitmap} is outside the disk`);
  if (!inside(gd.inodeBitmap)) throw corrupted(`group ${index}: inode bitmap at block ${gd.inodeBitmap} is outside the disk`);
  if (!inside(gd.inodeTable) || gd.inodeTable + sb.inodeTableBlocks > sb.blocksCount) {
    throw corrupted(`group ${index}: inode table at block ${gd.inodeTable} is outside the disk`);
  }
  if (gd.freeBlocks > sb.blocksPerGroup) throw corrupted(`group ${index}: ${gd.freeBlocks} free blocks in a group of ${sb.blocksPerGroup}`);
  if (gd.freeInodes > sb.inodesPerGroup) throw corrupted(`group ${index}: ${gd.freeInodes} free inodes in a group of ${sb.inodesPerGroup}`);
  return gd;
}

/** Writes `gd`'s counters into the descriptor at `bytes[offset..]`. */
export function storeGroupDescriptor(gd: GroupDescriptor, bytes: Uint8Array, offset: number): void {
  const v = new DataView(bytes.buffer, bytes.byteOffset + offset, GROUP_DESC_SIZE);
  v.setUint16(BG_FREE_BLOCKS_COUNT, gd.freeBlocks, true);
  v.setUint16(BG_FREE_INODES_COUNT, gd.freeInodes, true);
  v.setUint16(BG_USED_DIRS_COUNT, gd.usedDirs, true);
}
