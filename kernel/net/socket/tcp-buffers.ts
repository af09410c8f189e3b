/**
 * Bounded byte storage for TCP: a ring buffer (send and receive queues) and the
 * out-of-order segment queue with a byte limit (RFC 9293 §3.10.7.4: segments beyond
 * RCV.NXT may be held for later processing).
 */
// Sequence arithmetic modulo 2^32 (tcp-seq.ts) is written out inline in this file — a < b is
// ((a - b) | 0) < 0, a + n is ((a + n) >>> 0), a − b is ((a - b) | 0) — because a function call
// per comparison is a large share of a segment's cost in the interpreter.

/**
 * A fixed-capacity FIFO of bytes; data is copied in once and out once. Every segment goes
 * through here, so min/max are comparisons and the capacity a plain field (Math.min and a
 * typed array's length are native calls in the interpreter).
 */
export class ByteRing {
  readonly data: Uint8Array;
  /** Bytes the ring can hold. */
  readonly capacity: number;
  /** Index of the first stored byte. */
  private head = 0;
  /** Number of stored bytes. */
  length = 0;

  constructor(capacity: number) {
    this.data = new Uint8Array(capacity);
    this.capacity = capacity;
  }

  get free(): number { return this.capacity - this.length; }

  /** Appends up to `count` bytes of source[offset…]; returns how many fit. */
  write(source: Uint8Array, offset: number, count: number): number {
    const capacity = this.capacity;
    const free = capacity - this.length;
    const n = count < free ? count : free;
    if (n <= 0) return 0;
    const tail = (this.head + this.length) % capacity;
    const first = capacity - tail;
    if (n <= first) {
      // A whole buffer (the app's usual write) is copied without a view of it.
      this.data.set(offset === 0 && n === source.length ? source : source.subarray(offset, offset + n), tail);
    } else {
      this.data.set(source.subarray(offset, offset + first), tail);
      this.data.set(source.subarray(offset + first, offset + n), 0);
    }
    this.length += n;
    return n;
  }

  /** Copies `count` stored bytes starting `from` bytes after the head into target[targetOffset…]. */
  copyOut(from: number, count: number, target: Uint8Array, targetOffset: number): void {
    const capacity = this.capacity;
    const start = (this.head + from) % capacity;
    const first = capacity - start;
    if (count <= first) {
      target.set(this.data.subarray(start, start + count), targetOffset);
    } else {
      target.set(this.data.subarray(start, capacity), targetOffset);
      target.set(this.data.subarray(0, count - first), targetOffset + first);
    }
  }

  /** Removes the first `count` stored bytes and returns them (a copy: one native call when contiguous). */
  take(count: number): Uint8Array {
    const start = this.head;
    let out: Uint8Array;
    if (start + count <= this.capacity) {
      out = this.data.slice(start, start + count);
    } else {
      out = new Uint8Array(count);
      this.copyOut(0, count, out, 0);
    }
    this.consume(count);
    return out;
  }

  /** Drops `count` bytes from the head. */
  consume(count: number): void {
    this.head = (this.head + count) % this.capacity;
    this.length -= count;
    if (this.length === 0) this.head = 0;
  }
}

interface HeldSegment {
  sequence: number;
  data: Uint8Array;
}

/** Out-of-order data held until the hole before it fills; bounded by `limit` bytes. */
export class OutOfOrderQueue {
  private readonly segments: HeldSegment[] = [];
  /** Bytes currently held. */
  bytes = 0;

  constructor(private readonly limit: number) {}

  get isEmpty(): boolean { return this.segments.length === 0; }

  /**
   * Holds a copy of `payload` (sequence `sequence`); returns false when it was dropped
   * because the byte limit is reached (the sender retransmits it).
   */
  insert(sequence: number, payload: Uint8Array): boolean {
    if (payload.length === 0) return true;
    const end = ((sequence + payload.length) >>> 0);
    let index = 0;
    while (index < this.segments.length && ((((this.segments[index]!.sequence) - sequence) | 0) <= 0)) {
      const held = this.segments[index]!;
      // Fully covered by what is held already: a duplicate.
      if ((((end - (((held.sequence + held.data.length) >>> 0))) | 0) <= 0)) return true;
      index++;
    }
    if (this.bytes + payload.length > this.limit) return false;
    this.segments.splice(index, 0, { sequence, data: payload.slice() });
    this.bytes += payload.length;
    return true;
  }

  /**
   * Moves every byte that now continues `receiveNext` into `ring`; returns the new
   * receive-next. Held bytes already below it are discarded.
   */
  drainInto(receiveNext: number, ring: ByteRing | null): number {
    while (this.segments.length > 0) {
      const held = this.segments[0]!;
      if ((((held.sequence - receiveNext) | 0) > 0)) break;
      const skip = ((receiveNext - held.sequence) | 0);
      const useful = held.data.length - skip;
      if (useful > 0) {
        const written = ring === null ? useful : ring.write(held.data, skip, useful);
        receiveNext = ((receiveNext + written) >>> 0);
        if (written < useful) break; // no room: keep the rest (cannot happen within our window)
      }
      this.segments.shift();
      this.bytes -= held.data.length;
    }
    return receiveNext;
  }

  /** Forgets everything (connection reset). */
  clear(): void {
    this.segments.length = 0;
    this.bytes = 0;
  }
}
