/**
 * virtio-blk driver (virtio 1.2 §5.2): read, write, flush, device id; capacity, read-only
 * and block-size features; up to a queue's worth of requests in flight.
 *
 * A request (§5.2.6) is three segments: a 16-byte header {type, reserved, sector} the
 * device reads, the data, and one status byte the device writes. Headers and status bytes
 * live in one DMA block indexed by request slot; data goes straight from/to the caller's
 * buffer (guest memory is identity mapped), so nothing is copied. Requests issued in the
 * same synchronous stretch of JavaScript are published with one notification.
 */
import { hw } from "../../hw.ts";
import type { VirtioMmioTransport } from "./mmio.ts";
import { VirtioDriver } from "./driver.ts";
import type { Virtqueue } from "./virtqueue.ts";

// Feature bits (§5.2.3).
const VIRTIO_BLK_F_SIZE_MAX = 1;
const VIRTIO_BLK_F_SEG_MAX = 2;
const VIRTIO_BLK_F_RO = 5;
const VIRTIO_BLK_F_BLK_SIZE = 6;
const VIRTIO_BLK_F_FLUSH = 9;

// Request types and status values (§5.2.6).
const VIRTIO_BLK_T_IN = 0;
const VIRTIO_BLK_T_OUT = 1;
const VIRTIO_BLK_T_FLUSH = 4;
const VIRTIO_BLK_T_GET_ID = 8;
const VIRTIO_BLK_S_OK = 0;
const VIRTIO_BLK_S_IOERR = 1;
const VIRTIO_BLK_S_UNSUPP = 2;
const STATUS_NOT_WRITTEN = 0xff;

/** virtio-blk addresses the disk in 512-byte sectors whatever the block size (§5.2.6). */
export const SECTOR_SIZE = 512;
const ID_BYTES = 20;
const QUEUE_SIZE = 256;

const OPERATION = ["read", "write", "", "", "flush", "", "", "", "get id"];

/** A block device as the app sees it (`blk.open()`). */
export interface BlockDevice {
  /** Size in 512-byte sectors. */
  readonly capacity: number;
  /** Unit of `sector` arguments and of data lengths: always 512 (§5.2.6). */
  readonly sectorSize: number;
  /** The device's preferred block size in bytes (VIRTIO_BLK_F_BLK_SIZE, else 512). */
  readonly blockSize: number;
  /** True when the device offered VIRTIO_BLK_F_RO: writes reject. */
  readonly readOnly: boolean;
  /** The device's serial number (VIRTIO_BLK_T_GET_ID, up to 20 bytes; "" when unset). */
  id(): Promise<string>;
  /** Reads `count` sectors from `sector` into a new buffer, or into `into` (length a multiple of 512). */
  read(sector: number, countOrInto: number | Uint8Array): Promise<Uint8Array>;
  /** Writes `data` (length a multiple of 512) at `sector`. */
  write(sector: number, data: Uint8Array): Promise<void>;
  /** Makes completed writes durable (VIRTIO_BLK_T_FLUSH; immediate without VIRTIO_BLK_F_FLUSH). */
  flush(): Promise<void>;
}

/** A request waiting for a free slot. */
type Deferred = () => void;

/** The virtio-blk driver for one device. */
export class VirtioBlk extends VirtioDriver implements BlockDevice {
  readonly capacity: number;
  readonly sectorSize = SECTOR_SIZE;
  readonly blockSize: number;
  readonly readOnly: boolean;
  readonly canFlush: boolean;
  private readonly vq: Virtqueue<number>;
  private readonly slots: number;
  // Per slot: header (4 x u32) and status byte in DMA memory; promise callbacks and data.
  private readonly header32: Uint32Array;
  private readonly status8: Uint8Array;
  private readonly headerPhys: number;
  private readonly statusPhys: number;
  private readonly resolveFn: (((value: Uint8Array) => void) | undefined)[];
  private readonly rejectFn: (((error: Error) => void) | undefined)[];
  private readonly buffers: (Uint8Array | undefined)[];
  private readonly freeSlots: number[] = [];
  private readonly waiting: Deferred[] = [];
  private kickQueued = false;
  private readonly kickFn = (): void => {
    this.kickQueued = false;
    this.vq.kick();
  };
  private readonly completeFn = (slot: number, length: number): void => this.complete(slot, length);
  /** Requests completed, for benchmarks. */
  completed = 0;

  constructor(transport: VirtioMmioTransport) {
    super(transport, "blk");
    this.negotiate([VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH]);
    const t = transport;
    // Config layout (§5.2.4): capacity u64 @0, size_max @8, seg_max @12, geometry @16, blk_size @20.
    const config = t.readConfig((c) => ({
      capacity: c.u64(0),
      segMax: t.has(VIRTIO_BLK_F_SEG_MAX) ? c.u32(12) : 0,
      blkSize: t.has(VIRTIO_BLK_F_BLK_SIZE) ? c.u32(20) : SECTOR_SIZE,
    }));
    this.capacity = config.capacity;
    this.blockSize = config.blkSize;
    this.readOnly = t.has(VIRTIO_BLK_F_RO);
    this.canFlush = t.has(VIRTIO_BLK_F_FLUSH);
    if (config.segMax !== 0 && config.segMax < 3 && !t.has(28)) {
      throw new Error(`${this.name}: seg_max ${config.segMax} is too small for a request`);
    }
    this.vq = this.createQueue(0, QUEUE_SIZE, 3);
    // Without indirect descriptors a request takes 3 ring entries.
    this.slots = this.vq.indirect ? this.vq.size : Math.floor(this.vq.size / 3);
    const n = this.slots;
    const dma = hw.dmaAlloc(16 * n + n, 16);
    this.header32 = new Uint32Array(dma.buffer, 0, 4 * n);
    this.status8 = new Uint8Array(dma.buffer, 16 * n, n);
    this.headerPhys = dma.phys;
    this.statusPhys = dma.phys + 16 * n;
    this.resolveFn = new Array(n).fill(undefined);
    this.rejectFn = new Array(n).fill(undefined);
    this.buffers = new Array(n).fill(undefined);
    for (let i = n - 1; i >= 0; i--) this.freeSlots.push(i);
    t.driverOk();
  }

  id(): Promise<string> {
    const buffer = new Uint8Array(hw.dmaAlloc(ID_BYTES, 16).buffer);
    return this.request(VIRTIO_BLK_T_GET_ID, 0, buffer).then((b) => {
      let end = b.indexOf(0);
      if (end < 0) end = ID_BYTES;
      let s = "";
      for (let i = 0; i < end; i++) s += String.fromCharCode(b[i]!);
      return s;
    });
  }

  read(sector: number, countOrInto: number | Uint8Array): Promise<Uint8Array> {
    let buffer: Uint8Array;
    if (typeof countOrInto === "number") {
      if (!Number.isInteger(countOrInto) || countOrInto <= 0) {
        return Promise.reject(new RangeError(`${this.name}: read at sector ${sector}: count must be a positive integer, got ${countOrInto}`));
      }
      buffer = new Uint8Array(hw.dmaAlloc(countOrInto * SECTOR_SIZE, 4096).buffer);
    } else {
      buffer = countOrInto;
    }
    return this.request(VIRTIO_BLK_T_IN, sector, buffer);
  }

  write(sector: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) {
      return Promise.reject(new Error(`${this.name}: write at sector ${sector} refused: the disk is read-only (VIRTIO_BLK_F_RO)`));
    }
    return this.request(VIRTIO_BLK_T_OUT, sector, data).then(() => undefined);
  }

  flush(): Promise<void> {
    if (!this.canFlush) return Promise.resolve();
    return this.request(VIRTIO_BLK_T_FLUSH, 0, null).then(() => undefined);
  }

  private request(type: number, sector: number, data: Uint8Array | null): Promise<Uint8Array> {
    if (this.broken !== null) return Promise.reject(this.broken);
    const what = OPERATION[type]!;
    if (data !== null && type !== VIRTIO_BLK_T_GET_ID) {
      const sectors = data.byteLength / SECTOR_SIZE;
      if (!Number.isInteger(sector) || sector < 0) {
        return Promise.reject(new RangeError(`${this.name}: ${what} at sector ${sector}: not a sector number`));
      }
      if (data.byteLength === 0 || !Number.isInteger(sectors)) {
        return Promise.reject(new RangeError(`${this.name}: ${what} at sector ${sector}: length ${data.byteLength} is not a positive multiple of ${SECTOR_SIZE}`));
      }
      if (sector + sectors > this.capacity) {
        return Promise.reject(new RangeError(`${this.name}: ${what} of ${sectors} sectors at sector ${sector} is past the end of the disk (${this.capacity} sectors)`));
      }
    }
    return new Promise<Uint8Array>((resolve, reject) => {
      const start = (): void => {
        if (this.broken !== null) {
          reject(this.broken);
          return;
        }
        const slot = this.freeSlots.pop()!;
        this.resolveFn[slot] = resolve;
        this.rejectFn[slot] = reject;
        this.buffers[slot] = data ?? undefined;
        const h = 4 * slot;
        this.header32[h] = type;
        this.header32[h + 1] = 0;
        this.header32[h + 2] = sector % 0x100000000;
        this.header32[h + 3] = sector / 0x100000000;
        this.status8[slot] = STATUS_NOT_WRITTEN;
        const vq = this.vq;
        vq.addOut(this.headerPhys + 16 * slot, 16);
        if (data !== null) {
          const phys = hw.physAddr(data.buffer as ArrayBuffer) + data.byteOffset;
          if (type === VIRTIO_BLK_T_OUT) vq.addOut(phys, data.byteLength);
          else vq.addIn(phys, data.byteLength);
        }
        vq.addIn(this.statusPhys + slot, 1);
        vq.submit(slot); // cannot fail: slots <= what the ring holds
        if (!this.kickQueued) {
          this.kickQueued = true;
          queueMicrotask(this.kickFn);
        }
        this.startPolling();
      };
      if (this.freeSlots.length > 0) start();
      else this.waiting.push(start);
    });
  }

  protected service(): boolean {
    return this.vq.poll(this.completeFn) > 0;
  }

  protected busy(): boolean {
    return this.vq.inFlight > 0 || this.waiting.length > 0;
  }

  private complete(slot: number, length: number): void {
    const resolve = this.resolveFn[slot]!;
    const reject = this.rejectFn[slot]!;
    const data = this.buffers[slot];
    this.resolveFn[slot] = undefined;
    this.rejectFn[slot] = undefined;
    this.buffers[slot] = undefined;
    const status = this.status8[slot]!;
    const h = 4 * slot;
    const type = this.header32[h]!;
    const sector = this.header32[h + 2]! + this.header32[h + 3]! * 0x100000000;
    this.freeSlots.push(slot);
    this.completed++;
    if (status === VIRTIO_BLK_S_OK && length >= 1) {
      resolve(data ?? EMPTY);
    } else {
      const reason = status === VIRTIO_BLK_S_IOERR ? "I/O error (VIRTIO_BLK_S_IOERR)"
        : status === VIRTIO_BLK_S_UNSUPP ? "unsupported request (VIRTIO_BLK_S_UNSUPP)"
        : status === STATUS_NOT_WRITTEN ? "the device did not write a status"
        : `unknown status ${status}`;
      const where = type === VIRTIO_BLK_T_FLUSH || type === VIRTIO_BLK_T_GET_ID ? "" : ` of ${(data?.byteLength ?? 0) / SECTOR_SIZE} sectors at sector ${sector}`;
      reject(new Error(`${this.name}: ${OPERATION[type] ?? "request"}${where} failed: ${reason}`));
    }
    const next = this.waiting.shift();
    if (next !== undefined) next();
  }

  protected rejectAll(error: Error): void {
    for (let slot = 0; slot < this.slots; slot++) {
      const reject = this.rejectFn[slot];
      if (reject !== undefined) {
        this.resolveFn[slot] = undefined;
        this.rejectFn[slot] = undefined;
        this.buffers[slot] = undefined;
        reject(error);
      }
    }
    for (const start of this.waiting.splice(0)) start();
  }
}

const EMPTY = new Uint8Array(0);
