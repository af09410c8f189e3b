/**
 * ext2 directories: linked lists of variable-length entries filling each directory block.
 * An entry is {inode u32, rec_len u16, name_len u8, file_type u8, name}; rec_len reaches
 * the next entry, a multiple of 4, and the last entry of a block runs to its end. Adding
 * splits an entry's slack; removing merges the entry into the previous one (or clears
 * the inode of a block's first entry). Every entry is checked before use, so a corrupted
 * directory is an EIO naming the block, never a loop.
 *
 * Directories with an htree index (dir_index) read as linear ones (the index blocks look
 * like empty entries); on change the index flag is cleared, as e2fsck expects of drivers
 * that do not maintain it.
 */
import { TextDecoder, TextEncoder } from "../../encoding.ts";
import type { BlockCache } from "./cache.ts";
import { corrupted, ext2Error } from "./errors.ts";
import { EXT2_INDEX_FL, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type Inode, type InodeTable } from "./inode.ts";
import { INCOMPAT_FILETYPE, type Superblock } from "./superblock.ts";

// Directory entry field offsets (struct ext2_dir_entry_2).
const DE_INODE = 0;     // u32 inode number, 0 for an unused entry
const DE_REC_LEN = 4;   // u16 bytes to the next entry
const DE_NAME_LEN = 6;  // u8 (u16 without the filetype feature)
const DE_FILE_TYPE = 7; // u8 with the filetype feature
const DE_NAME = 8;      // name bytes, not NUL-terminated
const DE_HEADER = 8;

/** Longest name of an entry. */
export const NAME_MAX = 255;

/** file_type values by i_mode type (with the filetype feature). */
export function fileTypeOf(mode: number): number {
  switch (mode & S_IFMT) {
    case S_IFREG: return 1;
    case S_IFDIR: return 2;
    case 0x2000: return 3; // character device
    case 0x6000: return 4; // block device
    case 0x1000: return 5; // fifo
    case 0xc000: return 6; // socket
    case S_IFLNK: return 7;
    default: return 0;
  }
}

/** One entry as read by list(). */
export interface DirEntry {
  ino: number;
  name: string;
  fileType: number;
}

/** Where an entry lives, for changes. */
interface EntryLocation {
  block: number;
  data: Uint8Array;
  view: DataView;
  offset: number;
  previous: number;
  ino: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Bytes an entry with a `nameLength`-byte name needs. */
function entrySize(nameLength: number): number {
  return (DE_HEADER + nameLength + 3) & ~3;
}

/** Directory operations of one mounted file system. */
export class Directories {
  private readonly hasFileType: boolean;

  constructor(
    private readonly sb: Superblock,
    private readonly cache: BlockCache,
    private readonly inodes: InodeTable,
  ) {
    this.hasFileType = (sb.featureIncompat & INCOMPAT_FILETYPE) !== 0;
  }

  /** Encodes and checks a name (not empty, no '/', no NUL, at most 255 bytes). */
  static encodeName(name: string): Uint8Array {
    if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0")) {
      throw ext2Error("EINVAL", `invalid file name '${name}'`);
    }
    const bytes = encoder.encode(name);
    if (bytes.length > NAME_MAX) throw ext2Error("ENAMETOOLONG", `name longer than ${NAME_MAX} bytes`, name);
    return bytes;
  }

  private nameLength(view: DataView, offset: number): number {
    return this.hasFileType ? view.getUint8(offset + DE_NAME_LEN) : view.getUint16(offset + DE_NAME_LEN, true);
  }

  /** Number of blocks of a directory, checked against the disk. */
  private blockCount(dir: Inode): number {
    const bs = this.sb.blockSize;
    const size = dir.size;
    if (size % bs !== 0 || size / bs > this.sb.blocksCount) throw corrupted(`directory inode ${dir.ino} has size ${size}`);
    return size / bs;
  }

  /**
   * Calls `visit` for every entry (used or not) of every block; stops when it returns true
   * and returns that entry's location. Each entry is validated first.
   */
  private async scan(dir: Inode, visit: (view: DataView, offset: number, ino: number, nameLength: number) => boolean): Promise<EntryLocation | null> {
    const bs = this.sb.blockSize;
    const blocks = this.blockCount(dir);
    for (let index = 0; index < blocks; index++) {
      const { block } = await this.inodes.map(dir, index, false);
      if (block === 0) throw corrupted(`directory inode ${dir.ino} has a hole at block ${index}`);
      const data = await this.cache.get(block);
      const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
      let offset = 0;
      let previous = -1;
      while (offset < bs) {
        const ino = view.getUint32(offset + DE_INODE, true);
        const recLen = view.getUint16(offset + DE_REC_LEN, true);
        const nameLength = this.nameLength(view, offset);
        if (recLen < DE_HEADER || recLen % 4 !== 0 || offset + recLen > bs || (ino !== 0 && DE_HEADER + nameLength > recLen)) {
          throw corrupted(`directory inode ${dir.ino}, block ${block}, offset ${offset}: bad rec_len ${recLen} (name_len ${nameLength})`);
        }
        if (ino > this.sb.inodesCount) {
          throw corrupted(`directory inode ${dir.ino}, block ${block}, offset ${offset}: inode ${ino} is outside 1..${this.sb.inodesCount}`);
        }
        if (visit(view, offset, ino, nameLength)) return { block, data, view, offset, previous, ino };
        previous = offset;
        offset += recLen;
      }
    }
    return null;
  }

  private static nameEquals(view: DataView, offset: number, nameLength: number, name: Uint8Array): boolean {
    if (nameLength !== name.length) return false;
    for (let i = 0; i < nameLength; i++) if (view.getUint8(offset + DE_NAME + i) !== name[i]) return false;
    return true;
  }

  private async find(dir: Inode, name: Uint8Array): Promise<EntryLocation | null> {
    return this.scan(dir, (view, offset, ino, nameLength) => ino !== 0 && Directories.nameEquals(view, offset, nameLength, name));
  }

  /** The inode number `name` refers to in `dir`, or 0. */
  async lookup(dir: Inode, name: string): Promise<number> {
    const found = await this.find(dir, Directories.encodeName(name));
    return found === null ? 0 : found.ino;
  }

  /** The entries of `dir`, "." and ".." included. */
  async list(dir: Inode): Promise<DirEntry[]> {
    const out: DirEntry[] = [];
    await this.scan(dir, (view, offset, ino, nameLength) => {
      if (ino !== 0) {
        const bytes = new Uint8Array(view.buffer, view.byteOffset + offset + DE_NAME, nameLength);
        out.push({ ino, name: decoder.decode(bytes), fileType: this.hasFileType ? view.getUint8(offset + DE_FILE_TYPE) : 0 });
      }
      return false;
    });
    return out;
  }

  /** Whether `dir` holds nothing but "." and "..". */
  async isEmpty(dir: Inode): Promise<boolean> {
    const found = await this.scan(dir, (view, offset, ino, nameLength) => {
      if (ino === 0) return false;
      const first = view.getUint8(offset + DE_NAME);
      const second = view.getUint8(offset + DE_NAME + 1);
      const dot = nameLength === 1 && first === 0x2e;
      const dotdot = nameLength === 2 && first === 0x2e && second === 0x2e;
      return !dot && !dotdot;
    });
    return found === null;
  }

  private writeEntry(view: DataView, offset: number, ino: number, recLen: number, name: Uint8Array, fileType: number): void {
    view.setUint32(offset + DE_INODE, ino, true);
    view.setUint16(offset + DE_REC_LEN, recLen, true);
    if (this.hasFileType) {
      view.setUint8(offset + DE_NAME_LEN, name.length);
      view.setUint8(offset + DE_FILE_TYPE, fileType);
    } else {
      view.setUint16(offset + DE_NAME_LEN, name.length, true);
    }
    new Uint8Array(view.buffer, view.byteOffset + offset + DE_NAME, name.length).set(name);
  }

  private dropIndex(dir: Inode): void {
    if ((dir.flags & EXT2_INDEX_FL) !== 0) dir.flags = dir.flags & ~EXT2_INDEX_FL;
  }

  /**
   * Adds `name` → `ino` to `dir` (the caller checked it is absent), in the first slack big
   * enough, else in a new block. Saves `dir` (size, blocks, times).
   */
  async add(dir: Inode, name: string, ino: number, mode: number, seconds: number): Promise<void> {
    const bytes = Directories.encodeName(name);
    const needed = entrySize(bytes.length);
    const fileType = fileTypeOf(mode);
    const slot = await this.scan(dir, (view, offset, entryIno, nameLength) => {
      const used = entryIno === 0 ? 0 : entrySize(nameLength);
      return view.getUint16(offset + DE_REC_LEN, true) - used >= needed;
    });
    if (slot !== null) {
      const recLen = slot.view.getUint16(slot.offset + DE_REC_LEN, true);
      if (slot.ino === 0) {
        this.writeEntry(slot.view, slot.offset, ino, recLen, bytes, fileType);
      } else {
        const used = entrySize(this.nameLength(slot.view, slot.offset));
        slot.view.setUint16(slot.offset + DE_REC_LEN, used, true);
        this.writeEntry(slot.view, slot.offset + used, ino, recLen - used, bytes, fileType);
      }
      this.cache.markDirty(slot.block, "meta");
    } else {
      const index = this.blockCount(dir);
      const { block } = await this.inodes.map(dir, index, true);
      const data = this.cache.getForOverwrite(block, true);
      this.writeEntry(new DataView(data.buffer, data.byteOffset, data.byteLength), 0, ino, this.sb.blockSize, bytes, fileType);
      this.cache.markDirty(block, "meta");
      dir.size = (index + 1) * this.sb.blockSize;
    }
    this.dropIndex(dir);
    dir.touch("mc", seconds);
    await this.inodes.save(dir);
  }

  /** Removes the entry `name` from `dir`; returns the inode it named (0 when absent). Saves `dir`. */
  async remove(dir: Inode, name: string, seconds: number): Promise<number> {
    const found = await this.find(dir, Directories.encodeName(name));
    if (found === null) return 0;
    const { view, offset, previous } = found;
    if (previous >= 0) {
      const merged = view.getUint16(previous + DE_REC_LEN, true) + view.getUint16(offset + DE_REC_LEN, true);
      view.setUint16(previous + DE_REC_LEN, merged, true);
    } else {
      view.setUint32(offset + DE_INODE, 0, true);
    }
    this.cache.markDirty(found.block, "meta");
    this.dropIndex(dir);
    dir.touch("mc", seconds);
    await this.inodes.save(dir);
    return found.ino;
  }

  /** Points the existing entry `name` of `dir` at `ino` (rename over an existing name). Saves `dir`. */
  async replace(dir: Inode, name: string, ino: number, mode: number, seconds: number): Promise<void> {
    const found = await this.find(dir, Directories.encodeName(name));
    if (found === null) throw ext2Error("ENOENT", "no such file or directory", name);
    found.view.setUint32(found.offset + DE_INODE, ino, true);
    if (this.hasFileType) found.view.setUint8(found.offset + DE_FILE_TYPE, fileTypeOf(mode));
    this.cache.markDirty(found.block, "meta");
    this.dropIndex(dir);
    dir.touch("mc", seconds);
    await this.inodes.save(dir);
  }

  /** Writes the first block of a new directory: "." → itself, ".." → `parent`. Saves `dir`. */
  async initialise(dir: Inode, parent: number): Promise<void> {
    const { block } = await this.inodes.map(dir, 0, true);
    const data = this.cache.getForOverwrite(block, true);
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const dotSize = entrySize(1);
    this.writeEntry(view, 0, dir.ino, dotSize, encoder.encode("."), 2);
    this.writeEntry(view, dotSize, parent, this.sb.blockSize - dotSize, encoder.encode(".."), 2);
    this.cache.markDirty(block, "meta");
    dir.size = this.sb.blockSize;
    await this.inodes.save(dir);
  }

  /** The ".." entry's inode of `dir` (0 when missing). */
  async parentOf(dir: Inode): Promise<number> {
    const found = await this.find(dir, encoder.encode(".."));
    return found === null ? 0 : found.ino;
  }

  /** Points ".." of `dir` at `parent` (a directory moved by rename). */
  async setParent(dir: Inode, parent: number): Promise<void> {
    const found = await this.find(dir, encoder.encode(".."));
    if (found === null) throw corrupted(`directory inode ${dir.ino} has no '..' entry`);
    found.view.setUint32(found.offset + DE_INODE, parent, true);
    this.cache.markDirty(found.block, "meta");
  }
}
