/**
 * Test doubles for TCP: a recording IpSender, a segment builder/parser for driving one
 * stack segment by segment, and a simulated lossy link between two stacks with a virtual
 * clock (seeded PRNG: loss, reordering, duplication, delay).
 */
import { createHash } from "node:crypto";
import type { TcpSocket } from "../../kernel/net/socket/tcp-api.ts";
import type { IpSender } from "../../kernel/net/ip.ts";
import { PROTOCOL_TCP } from "../../kernel/net/ip.ts";
import { pseudoHeaderSum } from "../../kernel/net/wire/checksum.ts";
import {
  createTcpOptions, fillTcpChecksum, parseTcpOptions, tcpAcknowledgment, tcpDestinationPort, tcpFlags,
  tcpHeaderLength, tcpHeaderLengthFor, tcpSequence, tcpSourcePort, tcpWindow, type TcpHeaderFields,
  type TcpOptions, TCP_FIN, TCP_PSH, writeTcpHeader,
} from "../../kernel/net/wire/tcp.ts";
import { TcpStack } from "../../kernel/net/socket/tcp.ts";
import type { TcpConfig } from "../../kernel/net/socket/tcp-config.ts";

export const ADDRESS_A = 0x0a000001; // 10.0.0.1
export const ADDRESS_B = 0x0a000002; // 10.0.0.2
export const SECRET = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);

/** A parsed segment, as a test wants to look at it. */
export interface Segment {
  source: number;
  destination: number;
  sourcePort: number;
  destinationPort: number;
  sequence: number;
  acknowledgment: number;
  flags: number;
  window: number;
  options: TcpOptions;
  payload: Uint8Array;
  bytes: Uint8Array;
}

/** Parses a TCP segment (bytes are kept, not copied). */
export function parseSegment(source: number, destination: number, bytes: Uint8Array): Segment {
  const options = createTcpOptions();
  parseTcpOptions(bytes, options);
  return {
    source, destination, sourcePort: tcpSourcePort(bytes), destinationPort: tcpDestinationPort(bytes),
    sequence: tcpSequence(bytes), acknowledgment: tcpAcknowledgment(bytes), flags: tcpFlags(bytes),
    window: tcpWindow(bytes), options, payload: bytes.subarray(tcpHeaderLength(bytes)), bytes,
  };
}

/** Fields for buildSegment; everything optional but ports. */
export interface SegmentSpec {
  sourcePort: number;
  destinationPort: number;
  sequence?: number;
  acknowledgment?: number;
  flags: number;
  window?: number;
  maxSegmentSize?: number;
  windowScale?: number;
  timestamps?: [number, number];
  payload?: Uint8Array;
}

/** Builds a checksummed segment from source to destination. */
export function buildSegment(source: number, destination: number, spec: SegmentSpec): Uint8Array {
  const header: TcpHeaderFields = {
    sourcePort: spec.sourcePort, destinationPort: spec.destinationPort, sequence: (spec.sequence ?? 0) >>> 0,
    acknowledgment: (spec.acknowledgment ?? 0) >>> 0, flags: spec.flags, window: spec.window ?? 65535,
    maxSegmentSize: spec.maxSegmentSize ?? -1, windowScale: spec.windowScale ?? -1, sackPermitted: false,
    hasTimestamps: spec.timestamps !== undefined, timestampValue: spec.timestamps?.[0] ?? 0, timestampEcho: spec.timestamps?.[1] ?? 0,
  };
  const payload = spec.payload ?? new Uint8Array(0);
  const headerLength = tcpHeaderLengthFor(header);
  const bytes = new Uint8Array(headerLength + payload.length);
  writeTcpHeader(bytes, header);
  bytes.set(payload, headerLength);
  fillTcpChecksum(source, destination, bytes);
  return bytes;
}

/** An IpSender that records what it is asked to send. */
export class RecordingSender implements IpSender {
  readonly sent: Segment[] = [];
  refuse = false;
  constructor(readonly address: number, readonly maxSegment = 1480) {}
  send(destination: number, protocol: number, length: number, fill: (buffer: Uint8Array, offset: number) => void): boolean {
    if (this.refuse) return false;
    if (protocol !== PROTOCOL_TCP) throw new Error("not TCP");
    const bytes = new Uint8Array(length);
    fill(bytes, 0);
    this.sent.push(parseSegment(this.address, destination, bytes));
    return true;
  }
  /** Returns and forgets everything sent so far. */
  take(): Segment[] {
    return this.sent.splice(0);
  }
}

/**
 * What a device with TCP segmentation offload does with a large segment (sendSegmented):
 * checks that its checksum field holds the folded pseudo-header sum over the whole segment,
 * then cuts it into segments of `segmentSize` payload bytes with the same header, advancing
 * the sequence number, PSH and FIN only on the last, each checksummed.
 */
export function cutSegment(source: number, destination: number, big: Uint8Array, headerLength: number, segmentSize: number): Uint8Array[] {
  let partial = pseudoHeaderSum(source, destination, PROTOCOL_TCP, big.length);
  partial = (partial & 0xffff) + (partial >>> 16);
  partial = (partial & 0xffff) + (partial >>> 16);
  if (((big[16]! << 8) | big[17]!) !== partial) throw new Error("a large segment without the pseudo-header sum in its checksum field");
  if (tcpHeaderLength(big) !== headerLength) throw new Error(`header length ${headerLength} is not the segment's ${tcpHeaderLength(big)}`);
  const payload = big.length - headerLength;
  const first = tcpSequence(big), flags = tcpFlags(big);
  const pieces: Uint8Array[] = [];
  for (let at = 0; at < payload; at += segmentSize) {
    const n = Math.min(segmentSize, payload - at);
    const piece = new Uint8Array(headerLength + n);
    piece.set(big.subarray(0, headerLength));
    piece.set(big.subarray(headerLength + at, headerLength + at + n), headerLength);
    new DataView(piece.buffer).setUint32(4, (first + at) >>> 0);
    piece[13] = at + n === payload ? flags : flags & ~(TCP_PSH | TCP_FIN);
    piece[16] = 0;
    piece[17] = 0;
    fillTcpChecksum(source, destination, piece);
    pieces.push(piece);
  }
  return pieces;
}

/** A RecordingSender with segmentation offload: large segments are recorded whole, with their segment size. */
export class SegmentingSender extends RecordingSender {
  readonly large: { segment: Segment; segmentSize: number; pieces: Uint8Array[] }[] = [];
  constructor(address: number, readonly limit = 65_000) {
    super(address);
  }
  segmentedLimit(_destination: number): number {
    return this.refuse ? 0 : this.limit;
  }
  sendSegmented(destination: number, length: number, headerLength: number, segmentSize: number, fill: (buffer: Uint8Array, offset: number) => void): boolean {
    if (this.refuse || length > this.limit) return false;
    const bytes = new Uint8Array(length);
    fill(bytes, 0);
    const segment = parseSegment(this.address, destination, bytes);
    this.large.push({ segment, segmentSize, pieces: cutSegment(this.address, destination, bytes, headerLength, segmentSize) });
    this.sent.push(segment);
    return true;
  }
}

/** Deterministic PRNG (mulberry32). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `length` bytes from seededRandom(seed). */
export function randomBytes(length: number, seed: number): Uint8Array {
  const random = seededRandom(seed);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (random() * 256) | 0;
  return out;
}

export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Everything a socket yields until end of stream. */
export async function readAll(socket: TcpSocket): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const chunk = await socket.read();
    if (chunk === null) break;
    chunks.push(chunk);
    total += chunk.length;
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) { out.set(chunk, offset); offset += chunk.length; }
  return out;
}

/** Fault injection for SimulatedLink. */
export interface LinkFaults {
  loss?: number;
  duplicate?: number;
  reorder?: number;
  /** One-way delay (ms); reordered packets get up to 3× extra. */
  delay?: number;
  seed?: number;
}

interface InFlight {
  time: number;
  order: number;
  to: TcpStack;
  source: number;
  destination: number;
  bytes: Uint8Array;
}

/** Two TCP stacks joined by a lossy link, on a virtual clock. */
export class SimulatedLink {
  now = 0;
  readonly a: TcpStack;
  readonly b: TcpStack;
  private readonly queue: InFlight[] = [];
  private order = 0;
  private readonly random: () => number;
  packets = 0;
  dropped = 0;
  /** When set, called for each packet; returning false drops it (tests that cut the wire). */
  filter: ((source: number, bytes: Uint8Array) => boolean) | null = null;

  /** Large segments sent through sendSegmented (with `segmentation`), by both stacks. */
  segmentedSends = 0;

  /** `segmentation`: both stacks' senders offer TCP segmentation offload up to this segment length. */
  constructor(readonly faults: LinkFaults = {}, config: Partial<TcpConfig> = {}, configB: Partial<TcpConfig> = config, segmentation = 0) {
    this.random = seededRandom(faults.seed ?? 1);
    const link = this;
    const makeSender = (address: number): IpSender => ({
      address,
      maxSegment: 1480,
      send(destination, _protocol, length, fill) {
        const bytes = new Uint8Array(length);
        fill(bytes, 0);
        link.transmit(address, destination, bytes);
        return true;
      },
      ...(segmentation > 0 ? {
        segmentedLimit: () => segmentation,
        sendSegmented(destination: number, length: number, headerLength: number, segmentSize: number, fill: (buffer: Uint8Array, offset: number) => void) {
          if (length > segmentation) throw new Error(`a ${length}-byte segment beyond the ${segmentation} offered`);
          const bytes = new Uint8Array(length);
          fill(bytes, 0);
          link.segmentedSends++;
          for (const piece of cutSegment(address, destination, bytes, headerLength, segmentSize)) link.transmit(address, destination, piece);
          return true;
        },
      } : {}),
    });
    this.a = new TcpStack(makeSender(ADDRESS_A), { ...config, isnSecret: SECRET });
    this.b = new TcpStack(makeSender(ADDRESS_B), { ...configB, isnSecret: new Uint8Array([9, 9, 9, 9, 9, 9, 9, 9]) });
  }

  private transmit(source: number, destination: number, bytes: Uint8Array): void {
    this.packets++;
    if (this.filter !== null && !this.filter(source, bytes)) {
      this.dropped++;
      return;
    }
    const faults = this.faults;
    if (faults.loss !== undefined && this.random() < faults.loss) {
      this.dropped++;
      return;
    }
    const to = destination === ADDRESS_A ? this.a : this.b;
    const delay = faults.delay ?? 1;
    const copies = faults.duplicate !== undefined && this.random() < faults.duplicate ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      let time = this.now + delay;
      if (faults.reorder !== undefined && this.random() < faults.reorder) time += this.random() * 3 * delay;
      this.queue.push({ time, order: this.order++, to, source, destination, bytes: i === 0 ? bytes : bytes.slice() });
    }
  }

  /** Advances the clock, delivering packets and polling both stacks, until `done()` or `limit` ms. */
  async run(done: () => boolean, limit = 600_000, flushPromises = true): Promise<void> {
    const end = this.now + limit;
    let spins = 0;
    while (!done()) {
      if (flushPromises) await new Promise<void>((resolve) => setImmediate(resolve));
      if (done()) break;
      // Deliver what is due.
      this.queue.sort((x, y) => x.time - y.time || x.order - y.order);
      while (this.queue.length > 0 && this.queue[0]!.time <= this.now) {
        const packet = this.queue.shift()!;
        packet.to.input(packet.source, packet.destination, packet.bytes, this.now);
      }
      if (this.a.pollAt() <= this.now) this.a.poll(this.now);
      if (this.b.pollAt() <= this.now) this.b.poll(this.now);
      const next = Math.min(this.queue.length > 0 ? Math.min(...this.queue.map((p) => p.time)) : Infinity, this.a.pollAt(), this.b.pollAt());
      if (next > this.now) {
        if (next === Infinity || next > end) {
          if (flushPromises) await new Promise<void>((resolve) => setImmediate(resolve));
          if (done()) break;
          if (next === Infinity) throw new Error(`simulation idle at ${this.now} ms before completion`);
          throw new Error(`simulation time limit reached at ${this.now} ms`);
        }
        this.now = next;
        spins = 0;
      } else if (++spins > 10_000) {
        throw new Error(`simulation stuck at ${this.now} ms`);
      }
    }
  }
}
