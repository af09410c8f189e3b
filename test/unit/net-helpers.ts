/**
 * Test doubles for the network unit: a NetDevice backed by arrays, and a link joining two
 * of them with seeded fault injection (loss, duplication, reordering, corruption), in the
 * spirit of smoltcp's phy/ fault injector. Deterministic: nothing here reads a clock or
 * Math.random.
 */
import type { NetDevice } from "../../kernel/net/device.ts";

/** A seeded PRNG (mulberry32): next() returns a float in [0, 1). */
export interface SeededRandom {
  next(): number;
  /** An integer in [0, bound). */
  below(bound: number): number;
}

/** Creates a deterministic PRNG from a 32-bit seed. */
export function createRandom(seed: number): SeededRandom {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, below: (bound) => Math.floor(next() * bound) };
}

/** Options for one TestNetDevice. */
export interface TestNetDeviceOptions {
  mac?: Uint8Array;
  /** Largest IP packet (default 1500). */
  mtu?: number;
  /** How many transmitted frames may wait before txBuffer() returns null (default 256). */
  transmitQueueLimit?: number;
}

/** A NetDevice whose wire is two arrays: frames it transmitted, and frames waiting to be received. */
export class TestNetDevice implements NetDevice {
  readonly mac: Uint8Array;
  readonly mtu: number;
  readonly transmitQueueLimit: number;
  /** Frames transmitted and not yet taken by a link (or by the test). */
  readonly transmitted: Uint8Array[] = [];
  /** Frames waiting for the next poll() to hand them to the receive handler. */
  readonly receiveQueue: Uint8Array[] = [];
  /** Total frames transmitted / received over the device's life. */
  transmitCount = 0;
  receiveCount = 0;
  private handler: ((frame: Uint8Array) => void) | null = null;

  constructor(options: TestNetDeviceOptions = {}) {
    this.mac = options.mac ?? new Uint8Array([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    this.mtu = options.mtu ?? 1500;
    this.transmitQueueLimit = options.transmitQueueLimit ?? 256;
  }

  txBuffer(length: number): Uint8Array | null {
    if (this.transmitted.length >= this.transmitQueueLimit) return null;
    if (length > this.mtu + 14) return null;
    return new Uint8Array(length);
  }

  transmit(buffer: Uint8Array, length: number): void {
    this.transmitted.push(buffer.subarray(0, length));
    this.transmitCount++;
  }

  setReceiveHandler(handler: (frame: Uint8Array) => void): void {
    this.handler = handler;
  }

  /** Queues a frame as if it had arrived from the wire (delivered by the next poll()). */
  inject(frame: Uint8Array): void {
    this.receiveQueue.push(frame);
  }

  /** Removes and returns every transmitted frame. */
  takeTransmitted(): Uint8Array[] {
    return this.transmitted.splice(0, this.transmitted.length);
  }

  poll(): number {
    const frames = this.receiveQueue.splice(0, this.receiveQueue.length);
    for (const frame of frames) {
      this.receiveCount++;
      this.handler?.(frame);
    }
    return frames.length;
  }
}

/** Fault injection for createLink(): each is a probability per frame in [0, 1]. */
export interface LinkOptions {
  loss?: number;
  duplicate?: number;
  /** A reordered frame is held back and arrives after the frames of the next deliver(). */
  reorder?: number;
  /** Flips one random bit of the frame. */
  corrupt?: number;
  seed?: number;
  mtu?: number;
}

/** Two TestNetDevices joined by a wire; deliver() moves frames across. */
export interface TestLink {
  a: TestNetDevice;
  b: TestNetDevice;
  /** Moves every queued frame to the other side's receive queue, applying faults; returns
   *  how many frames arrived (copies count). The receiving device's poll() hands them up. */
  deliver(): number;
  /** Counters of the faults applied so far. */
  readonly stats: { lost: number; duplicated: number; reordered: number; corrupted: number };
}

/** Creates a link between two devices with MACs 52:54:00:00:00:0a and 52:54:00:00:00:0b. */
export function createLink(options: LinkOptions = {}): TestLink {
  const random = createRandom(options.seed ?? 1);
  const mtu = options.mtu ?? 1500;
  const a = new TestNetDevice({ mac: new Uint8Array([0x52, 0x54, 0, 0, 0, 0x0a]), mtu });
  const b = new TestNetDevice({ mac: new Uint8Array([0x52, 0x54, 0, 0, 0, 0x0b]), mtu });
  const stats = { lost: 0, duplicated: 0, reordered: 0, corrupted: 0 };
  const heldFor = new Map<TestNetDevice, Uint8Array[]>([[a, []], [b, []]]);

  const carry = (from: TestNetDevice, to: TestNetDevice): number => {
    let arrived = 0;
    const held = heldFor.get(to)!;
    const released = held.splice(0, held.length);
    for (const frame of from.takeTransmitted()) {
      if (options.loss && random.next() < options.loss) { stats.lost++; continue; }
      let copy = frame.slice();
      if (options.corrupt && random.next() < options.corrupt && copy.length > 0) {
        copy[random.below(copy.length)] ^= 1 << random.below(8);
        stats.corrupted++;
      }
      const copies = options.duplicate && random.next() < options.duplicate ? 2 : 1;
      if (copies === 2) stats.duplicated++;
      for (let i = 0; i < copies; i++) {
        if (options.reorder && random.next() < options.reorder) {
          held.push(copy);
          stats.reordered++;
        } else {
          to.inject(copy);
          arrived++;
        }
        copy = copy.slice();
      }
    }
    for (const frame of released) { to.inject(frame); arrived++; }
    return arrived;
  };

  return { a, b, stats, deliver: () => carry(a, b) + carry(b, a) };
}
