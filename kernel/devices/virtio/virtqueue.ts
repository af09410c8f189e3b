/**
 * A split virtqueue (virtio 1.2 §2.7): descriptor table, available ring, used ring, with
 * indirect descriptors (§2.7.5.3) and VIRTIO_F_EVENT_IDX notification suppression
 * (§2.7.7, §2.7.10).
 *
 * Usage by a driver, for each request:
 *
 *     vq.addOut(headerPhys, 16);  vq.addIn(dataPhys, 4096);  vq.addIn(statusPhys, 1);
 *     if (!vq.submit(token)) { ...queue full: retry after the next poll... }
 *     ...more requests...
 *     vq.kick();                        // once per batch: publish + notify if the device wants it
 *     vq.poll((token, len) => ...);     // from the driver's poller: completed requests
 *
 * Buffers are guest-physical ranges (DMA memory, or any ArrayBuffer: guest memory is identity
 * mapped); nothing is copied. A request of several segments takes ONE ring descriptor when
 * indirect descriptors were negotiated, so a queue of N entries holds N requests in flight.
 *
 * Everything the device writes is validated before use: a used index that moves by more
 * than the queue size, an id that is not the head of a chain in flight, a length larger
 * than the writable part of the chain. Any of these marks the queue broken: `onBroken`
 * runs once with a VirtqueueError, `poll` returns 0 and `submit` throws from then on, and
 * the driver rejects what was in flight (takeOutstanding()). The rest of the kernel goes on.
 *
 * Interrupts are suppressed while the driver polls (used_event kept just behind, or
 * VIRTQ_AVAIL_F_NO_INTERRUPT) and armed only by enableInterrupts() before the core halts.
 */
import { hw } from "../../hw.ts";
import { LEGACY_QUEUE_ALIGN, type QueueAddresses } from "./mmio.ts";

const VIRTQ_DESC_F_NEXT = 1;
const VIRTQ_DESC_F_WRITE = 2;
const VIRTQ_DESC_F_INDIRECT = 4;
const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
const VIRTQ_USED_F_NO_NOTIFY = 1;

/** Raised (through onBroken) when the device broke the ring protocol. */
export class VirtqueueError extends Error {
  override name = "VirtqueueError";
}

/** How a Virtqueue is built; `notify` writes the transport's QueueNotify. */
export interface VirtqueueOptions {
  /** Name used in errors, e.g. "virtio-blk@0xfeb00e00 queue 0". */
  name: string;
  /** Number of entries: a power of two up to 32768 (§2.7). */
  size: number;
  /** VIRTIO_F_INDIRECT_DESC was negotiated. */
  indirect: boolean;
  /** VIRTIO_F_EVENT_IDX was negotiated. */
  eventIdx: boolean;
  /** Most segments one request may have (size of each indirect table); default 8. */
  maxSegments?: number;
  /** Tells the device new buffers are available. */
  notify: () => void;
  /** Called once when the device breaks the protocol. */
  onBroken?: (error: VirtqueueError) => void;
  /** Ring memory from Virtqueue.allocateRing(size), when another core set the queue up with
   *  the device for this one (multiqueue virtio-net); default: allocated here. */
  ring?: { buffer: ArrayBuffer; phys: number };
}

/** §2.7.2 layout (legacy, also valid for version 2): descriptors, the available ring with
 *  used_event, then at the next 4 KiB boundary the used ring with avail_event. */
function ringLayout(n: number): { descBytes: number; usedOffset: number; total: number } {
  const descBytes = 16 * n;
  const availBytes = 6 + 2 * n;
  const usedOffset = Math.ceil((descBytes + availBytes) / LEGACY_QUEUE_ALIGN) * LEGACY_QUEUE_ALIGN;
  return { descBytes, usedOffset, total: usedOffset + 6 + 8 * n + 2 };
}

/** One split virtqueue and its bookkeeping; T is the driver's per-request token. */
export class Virtqueue<T> {
  readonly name: string;
  readonly size: number;
  readonly indirect: boolean;
  readonly eventIdx: boolean;
  readonly maxSegments: number;
  /** Where the device finds the three parts (hand to VirtioMmioTransport.setupQueue). */
  readonly addresses: QueueAddresses;
  /** Non-null once the device broke the protocol. */
  broken: VirtqueueError | null = null;
  /** Requests submitted and not yet returned by the device. */
  inFlight = 0;
  /** QueueNotify writes done (each is a VM exit), for tests and benchmarks. */
  notifications = 0;

  private readonly mask: number;
  private readonly notifyDevice: () => void;
  private readonly onBroken: ((error: VirtqueueError) => void) | undefined;
  // Views over device-shared memory (little-endian: x86).
  private readonly desc32: Uint32Array;
  private readonly desc16: Uint16Array;
  private readonly avail16: Uint16Array;
  private readonly used16: Uint16Array;
  private readonly used32: Uint32Array;
  private readonly usedEventAt: number;
  private readonly availEventAt: number;
  // Indirect tables: one of maxSegments entries per head descriptor.
  private readonly indirect32: Uint32Array | null = null;
  private readonly indirect16: Uint16Array | null = null;
  private readonly indirectPhys: number = 0;
  // Driver-private state: never read back from shared memory.
  private readonly nextFree: Uint16Array;
  private readonly chainTail: Uint16Array;
  private readonly chainCount: Uint16Array;
  private readonly writableBytes: Uint32Array;
  private readonly tokens: (T | undefined)[];
  private readonly outstanding: Uint8Array;
  private freeHead = 0;
  private numFree: number;
  private availIdx = 0;
  private publishedIdx = 0;
  private lastUsed = 0;
  private armed = false;
  // Segments of the request being built.
  private readonly stagePhys: Float64Array;
  private readonly stageLen: Uint32Array;
  private readonly stageFlags: Uint16Array;
  private staged = 0;
  /** Keeps the DMA memory alive as long as the queue. */
  private readonly memory: ArrayBuffer[] = [];

  constructor(options: VirtqueueOptions) {
    const n = options.size;
    if (!(n >= 1 && n <= 32768 && (n & (n - 1)) === 0)) throw new RangeError(`virtqueue size ${n} is not a power of two up to 32768`);
    this.name = options.name;
    this.size = n;
    this.mask = n - 1;
    this.indirect = options.indirect;
    this.eventIdx = options.eventIdx;
    this.maxSegments = options.maxSegments ?? 8;
    this.notifyDevice = options.notify;
    this.onBroken = options.onBroken;

    const { descBytes, usedOffset, total } = ringLayout(n);
    const ring = options.ring ?? hw.dmaAlloc(total, LEGACY_QUEUE_ALIGN);
    if (ring.buffer.byteLength < total || ring.phys % LEGACY_QUEUE_ALIGN !== 0) {
      throw new RangeError(`${options.name}: ring memory of ${ring.buffer.byteLength} bytes at ${ring.phys} does not fit ${n} entries`);
    }
    this.memory.push(ring.buffer);
    this.desc32 = new Uint32Array(ring.buffer, 0, 4 * n);
    this.desc16 = new Uint16Array(ring.buffer, 0, 8 * n);
    this.avail16 = new Uint16Array(ring.buffer, descBytes, 3 + n);
    this.used16 = new Uint16Array(ring.buffer, usedOffset, 3 + 4 * n);
    this.used32 = new Uint32Array(ring.buffer, usedOffset, 1 + 2 * n);
    this.usedEventAt = 2 + n;
    this.availEventAt = 2 + 4 * n;
    this.addresses = { desc: ring.phys, avail: ring.phys + descBytes, used: ring.phys + usedOffset };

    if (this.indirect) {
      const table = hw.dmaAlloc(16 * this.maxSegments * n, 16);
      this.memory.push(table.buffer);
      this.indirect32 = new Uint32Array(table.buffer);
      this.indirect16 = new Uint16Array(table.buffer);
      this.indirectPhys = table.phys;
    }

    this.nextFree = new Uint16Array(n);
    for (let i = 0; i < n; i++) this.nextFree[i] = (i + 1) & this.mask;
    this.numFree = n;
    this.chainTail = new Uint16Array(n);
    this.chainCount = new Uint16Array(n);
    this.writableBytes = new Uint32Array(n);
    this.tokens = new Array<T | undefined>(n).fill(undefined);
    this.outstanding = new Uint8Array(n);
    this.stagePhys = new Float64Array(this.maxSegments);
    this.stageLen = new Uint32Array(this.maxSegments);
    this.stageFlags = new Uint16Array(this.maxSegments);
    this.disableInterrupts();
  }

  /**
   * Zeroed ring memory for a queue of `size` entries and where the device finds its parts:
   * what VirtioMmioTransport.setupQueue needs before DRIVER_OK, for a Virtqueue that another
   * core builds later over the same memory (options.ring).
   */
  static allocateRing(size: number): { buffer: ArrayBuffer; phys: number; addresses: QueueAddresses } {
    const { descBytes, usedOffset, total } = ringLayout(size);
    const ring = hw.dmaAlloc(total, LEGACY_QUEUE_ALIGN);
    return { ...ring, addresses: { desc: ring.phys, avail: ring.phys + descBytes, used: ring.phys + usedOffset } };
  }

  /** Free ring descriptors. */
  get freeDescriptors(): number {
    return this.numFree;
  }

  /** Whether a request of `segments` segments fits now. */
  canSubmit(segments: number): boolean {
    return this.numFree >= (this.indirect && segments > 1 ? 1 : segments);
  }

  /** Adds a device-readable segment to the request being built. */
  addOut(phys: number, length: number): void {
    this.stage(phys, length, 0);
  }

  /** Adds a device-writable segment to the request being built (§2.7.4: after every readable one). */
  addIn(phys: number, length: number): void {
    this.stage(phys, length, VIRTQ_DESC_F_WRITE);
  }

  private stage(phys: number, length: number, flags: number): void {
    if (this.staged === this.maxSegments) {
      this.staged = 0;
      throw new RangeError(`${this.name}: more than ${this.maxSegments} segments in one request`);
    }
    this.stagePhys[this.staged] = phys;
    this.stageLen[this.staged] = length;
    this.stageFlags[this.staged++] = flags;
  }

  /**
   * Makes the staged segments one request identified by `token` and puts it in the
   * available ring (not yet visible to the device: call kick()). Returns false, dropping the
   * staged segments, when the ring has no room; throws once the queue is broken.
   */
  submit(token: T): boolean {
    const count = this.staged;
    this.staged = 0;
    if (this.broken !== null) throw this.broken;
    if (count === 0) throw new RangeError(`${this.name}: submit() without segments`);
    const useIndirect = this.indirect && count > 1;
    const need = useIndirect ? 1 : count;
    if (this.numFree < need) return false;

    const head = this.freeHead;
    let writable = 0;
    let tail = head;
    if (useIndirect) {
      // §2.7.5.3.1: one ring descriptor with F_INDIRECT pointing at a table of `count`.
      const t32 = this.indirect32!;
      const t16 = this.indirect16!;
      const base = head * this.maxSegments;
      for (let i = 0; i < count; i++) {
        const d = base + i;
        const phys = this.stagePhys[i]!;
        t32[4 * d] = phys % 0x100000000;
        t32[4 * d + 1] = phys / 0x100000000;
        t32[4 * d + 2] = this.stageLen[i]!;
        const flags = this.stageFlags[i]!;
        if (flags !== 0) writable += this.stageLen[i]!;
        t16[8 * d + 6] = i + 1 < count ? flags | VIRTQ_DESC_F_NEXT : flags;
        t16[8 * d + 7] = i + 1;
      }
      const phys = this.indirectPhys + 16 * base;
      this.writeDesc(head, phys, 16 * count, VIRTQ_DESC_F_INDIRECT, 0);
    } else {
      // §2.7.5: a chain linked through `next`, which is also our free-list link.
      let d = head;
      for (let i = 0; i < count; i++) {
        const flags = this.stageFlags[i]!;
        if (flags !== 0) writable += this.stageLen[i]!;
        const next = this.nextFree[d]!;
        this.writeDesc(d, this.stagePhys[i]!, this.stageLen[i]!, i + 1 < count ? flags | VIRTQ_DESC_F_NEXT : flags, next);
        tail = d;
        d = next;
      }
    }
    this.freeHead = this.nextFree[tail]!;
    this.numFree -= need;
    this.chainTail[head] = tail;
    this.chainCount[head] = need;
    this.writableBytes[head] = writable;
    this.tokens[head] = token;
    this.outstanding[head] = 1;
    this.inFlight++;
    // §2.7.13.2: the head goes into the next ring slot; idx is published by kick().
    this.avail16[2 + (this.availIdx & this.mask)] = head;
    this.availIdx = (this.availIdx + 1) & 0xffff;
    return true;
  }

  /**
   * submit() of a request of one segment (`writable`: device-writable), with no staging: a
   * receive buffer's re-post and a frame's transmission, once per packet. Same contract.
   */
  submitOne(phys: number, length: number, writable: boolean, token: T): boolean {
    if (this.staged !== 0) throw new RangeError(`${this.name}: submitOne() with segments staged`);
    if (this.broken !== null) throw this.broken;
    if (this.numFree === 0) return false;
    const head = this.freeHead;
    const d32 = this.desc32;
    d32[4 * head] = phys % 0x100000000;
    d32[4 * head + 1] = phys / 0x100000000;
    d32[4 * head + 2] = length;
    this.desc16[8 * head + 6] = writable ? VIRTQ_DESC_F_WRITE : 0;
    const next = this.nextFree[head]!;
    this.desc16[8 * head + 7] = next;
    this.freeHead = next;
    this.numFree--;
    this.chainTail[head] = head;
    this.chainCount[head] = 1;
    this.writableBytes[head] = writable ? length : 0;
    this.tokens[head] = token;
    this.outstanding[head] = 1;
    this.inFlight++;
    this.avail16[2 + (this.availIdx & this.mask)] = head;
    this.availIdx = (this.availIdx + 1) & 0xffff;
    return true;
  }

  private writeDesc(d: number, phys: number, length: number, flags: number, next: number): void {
    const d32 = this.desc32;
    d32[4 * d] = phys % 0x100000000;
    d32[4 * d + 1] = phys / 0x100000000;
    d32[4 * d + 2] = length;
    this.desc16[8 * d + 6] = flags;
    this.desc16[8 * d + 7] = next;
  }

  /**
   * Publishes every request submitted since the last kick (§2.7.13.3) and notifies the
   * device only if it asked for it (§2.7.13.4: avail_event with EVENT_IDX, else the
   * used ring's NO_NOTIFY flag). Returns whether a notification was sent.
   */
  kick(): boolean {
    const idx = this.availIdx;
    const old = this.publishedIdx;
    if (idx === old || this.broken !== null) return false;
    this.avail16[1] = idx;
    this.publishedIdx = idx;
    hw.fence(); // the idx store must be visible before we read the device's event index
    let notify: boolean;
    if (this.eventIdx) {
      const event = this.used16[this.availEventAt]!;
      notify = ((idx - event - 1) & 0xffff) < ((idx - old) & 0xffff); // vring_need_event()
    } else {
      notify = (this.used16[0]! & VIRTQ_USED_F_NO_NOTIFY) === 0;
    }
    if (notify) {
      this.notifications++;
      this.notifyDevice();
    }
    return notify;
  }

  /** True when the device has returned buffers that poll() has not consumed yet. */
  hasUsed(): boolean {
    return this.used16[1] !== this.lastUsed;
  }

  /**
   * Hands every request the device completed to `onUsed(token, bytesWritten)`, in ring
   * order, after validating each entry (§2.7.8). Returns how many completed.
   */
  poll(onUsed: (token: T, length: number) => void): number {
    if (this.broken !== null) return 0;
    const usedIdx = this.used16[1]!;
    const count = (usedIdx - this.lastUsed) & 0xffff;
    if (count === 0) return 0;
    if (count > this.inFlight) {
      this.fail(count > this.size
        ? `used index jumped from ${this.lastUsed} to ${usedIdx}, more than the queue size ${this.size}`
        : `used index moved by ${count} but only ${this.inFlight} requests are in flight`);
      return 0;
    }
    for (let k = 0; k < count; k++) {
      const slot = this.lastUsed & this.mask;
      const id = this.used32[1 + 2 * slot]!;
      const length = this.used32[2 + 2 * slot]!;
      if (id >= this.size || this.outstanding[id] !== 1) {
        this.fail(`device returned descriptor id ${id}, which it was never given`);
        return k;
      }
      if (length > this.writableBytes[id]!) {
        this.fail(`device wrote ${length} bytes into descriptor ${id}, whose writable buffers hold ${this.writableBytes[id]}`);
        return k;
      }
      const token = this.tokens[id] as T;
      this.tokens[id] = undefined;
      this.outstanding[id] = 0;
      this.nextFree[this.chainTail[id]!] = this.freeHead;
      this.freeHead = id;
      this.numFree += this.chainCount[id]!;
      this.inFlight--;
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
      if (!this.armed && this.eventIdx) this.avail16[this.usedEventAt] = (this.lastUsed - 1) & 0xffff;
      onUsed(token, length);
    }
    return count;
  }

  /**
   * Asks the device to interrupt at its next used buffer (§2.7.7 / §2.7.10), before the core
   * halts. Returns true if buffers were already used (the caller should poll, not halt).
   */
  enableInterrupts(): boolean {
    this.armed = true;
    if (this.eventIdx) this.avail16[this.usedEventAt] = this.lastUsed;
    else this.avail16[0] = 0;
    hw.fence(); // the event index store must be visible before we look at the used index
    return this.hasUsed();
  }

  /** Suppresses interrupts again while the driver polls. */
  disableInterrupts(): void {
    this.armed = false;
    if (this.eventIdx) this.avail16[this.usedEventAt] = (this.lastUsed - 1) & 0xffff;
    else this.avail16[0] = VIRTQ_AVAIL_F_NO_INTERRUPT;
  }

  /** Removes and returns the tokens of every request in flight (to reject them). */
  takeOutstanding(): T[] {
    const tokens: T[] = [];
    for (let id = 0; id < this.size; id++) {
      if (this.outstanding[id] === 1) {
        tokens.push(this.tokens[id] as T);
        this.tokens[id] = undefined;
        this.outstanding[id] = 0;
      }
    }
    this.inFlight = 0;
    return tokens;
  }

  /** Marks the queue broken (also used by drivers for device-level protocol errors). */
  fail(reason: string): void {
    if (this.broken !== null) return;
    this.broken = new VirtqueueError(`${this.name}: ${reason}; device disabled`);
    this.onBroken?.(this.broken);
  }
}
