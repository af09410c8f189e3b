/**
 * QEMU's firmware configuration device (fw_cfg), read through its DMA interface: how the VMM
 * hands the guest small named blobs at boot. Torito reads one: `opt/torito/seed`, the
 * per-core CSPRNG seeds `torito run` draws from the host's CSPRNG (kernel/devices/index.ts).
 *
 * Why not virtio-rng for that: starting a virtio device costs ~15 register accesses, each a
 * VM exit (~35 µs under this machine's /dev/kvm), plus its set-up in JavaScript, ~1.2 ms on
 * the boot path of every server. A fw_cfg DMA read is one port write.
 *
 * The DMA interface (QEMU docs/specs/fw_cfg.rst): the guest writes the physical address of
 * a FWCfgDmaAccess { be32 control; be32 length; be64 address } to the 64-bit big-endian
 * register at port 0x514 (high half, then low half at 0x518; the low write starts the
 * transfer, and a high half of zero, as for memory below 4 GiB, need not be written).
 * QEMU runs the transfer during that write and clears `control` (or leaves
 * FW_CFG_DMA_CTL_ERROR set). A VMM without fw_cfg ignores the port writes, so `control` is
 * left untouched: that is how its absence shows. Nothing here reads a port.
 */
import { hw } from "../hw.ts";

/** The DMA address register (64-bit, big-endian, high half first). */
const PORT_DMA_HIGH = 0x514;
const PORT_DMA_LOW = 0x518;
const CTL_ERROR = 0x01;
const CTL_READ = 0x02;
const CTL_SELECT = 0x08;
/** Selector of the file directory: be32 count, then 64-byte entries. */
const SELECT_FILE_DIR = 0x19;
const DIR_ENTRY = 64;
const DIR_NAME = 56;
/** The directory is read in one transfer of at most this many entries. */
const DIR_MAX_ENTRIES = 64;

/** One named blob of the fw_cfg file directory. */
export interface FwCfgFile {
  name: string;
  size: number;
  selector: number;
}

/** Parses the fw_cfg file directory (be32 count, then { be32 size, be16 select, u16, char name[56] }). */
export function parseFwCfgDirectory(bytes: Uint8Array): FwCfgFile[] {
  if (bytes.length < 4) return [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = Math.min(view.getUint32(0), Math.floor((bytes.length - 4) / DIR_ENTRY));
  const files: FwCfgFile[] = [];
  for (let i = 0; i < count; i++) {
    const at = 4 + i * DIR_ENTRY;
    let name = "";
    for (let j = 0; j < DIR_NAME; j++) {
      const c = bytes[at + 8 + j]!;
      if (c === 0) break;
      name += String.fromCharCode(c);
    }
    files.push({ name, size: view.getUint32(at), selector: view.getUint16(at + 4) });
  }
  return files;
}

/** Byte-swaps a 32-bit value (the DMA register is big-endian; `outl` writes little-endian). */
function bswap32(v: number): number {
  return (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) >>> 0;
}

/**
 * Reads `length` bytes of item `selector` into a new buffer; null when the VMM has no fw_cfg
 * (the request was ignored) or refused it. `length` may exceed the item: QEMU pads with zeros.
 */
function dmaRead(selector: number, length: number): Uint8Array | null {
  const dma = hw.dmaAlloc(16 + length, 16);
  const request = new DataView(dma.buffer, 0, 16);
  request.setUint32(0, (selector << 16) | CTL_SELECT | CTL_READ);
  request.setUint32(4, length);
  const data = dma.phys + 16;
  request.setUint32(8, Math.floor(data / 0x100000000));
  request.setUint32(12, data % 0x100000000);
  // The high half is zero after reset (and QEMU zeroes the whole register after each
  // transfer): write it only when it is not, one VM exit less per read on the boot path.
  const high = Math.floor(dma.phys / 0x100000000);
  if (high !== 0) hw.outl(PORT_DMA_HIGH, bswap32(high));
  hw.outl(PORT_DMA_LOW, bswap32(dma.phys % 0x100000000));
  const control = request.getUint32(0);
  // Still set: no fw_cfg here (the write was ignored); CTL_ERROR: the VMM refused the read.
  if (control !== 0) return null;
  return new Uint8Array(dma.buffer, 16, length);
}

/** The fw_cfg file `name`, or null when the VMM has no fw_cfg or no such file. */
export function readFwCfgFile(name: string): Uint8Array | null {
  const dir = dmaRead(SELECT_FILE_DIR, 4 + DIR_MAX_ENTRIES * DIR_ENTRY);
  if (dir === null) return null;
  const file = parseFwCfgDirectory(dir).find((f) => f.name === name);
  if (file === undefined) return null;
  const bytes = dmaRead(file.selector, file.size);
  if (bytes === null) return null;
  const copy = bytes.slice();
  bytes.fill(0); // the DMA buffer is not handed back; leave no secret in it
  return copy;
}
