/**
 * IPv4 fragment reassembly (RFC 791 §3.2, RFC 815), bounded: at most `maxDatagrams` in
 * progress, `maxBytes` buffered in total, and each abandoned after `timeout`. Fragments
 * that overlap an earlier one without repeating it exactly make the whole datagram be
 * dropped (as Linux does since 4.19, and RFC 5722 requires for IPv6): overlaps are only
 * ever produced by attackers trying to slip data past a filter.
 */
import type { Ipv4Packet } from "../wire/ipv4.ts";
import { IPV4_HEADER_LENGTH, IPV4_MAX_DATAGRAM } from "../wire/ipv4.ts";

/** Limits of a FragmentReassembler. */
export interface ReassemblyOptions {
  /** Datagrams reassembled at once (default 16). */
  maxDatagrams?: number;
  /** Payload bytes buffered over all datagrams (default 256 KiB). */
  maxBytes?: number;
  /** Milliseconds from the first fragment until a datagram is abandoned (default 15 s, RFC 791). */
  timeout?: number;
}

/** Why a fragment (or its datagram) was dropped. */
export type FragmentDropReason =
  | "fragment-bad-length"
  | "fragment-too-large"
  | "fragment-overlap"
  | "fragment-duplicate"
  | "fragment-inconsistent"
  | "fragment-no-room"
  | "fragment-timeout";

interface Piece {
  start: number;
  end: number;
  data: Uint8Array;
}

interface PartialDatagram {
  /** Sorted by start, never overlapping. */
  pieces: Piece[];
  received: number;
  /** Payload length, known once the last fragment (MF = 0) arrived; -1 before. */
  totalLength: number;
  deadline: number;
}

/** Collects fragments and hands back whole payloads. */
export class FragmentReassembler {
  private readonly datagrams = new Map<string, PartialDatagram>();
  private bufferedBytes = 0;
  /**
   * No datagram times out before this (a lower bound, exact after poll() walked); what
   * pollAt() returns. Public for the interface's event-loop pass, which reads it rather than
   * calling poll() or pollAt() (a call each per pass); written only here.
   */
  nextDeadline = Infinity;
  private readonly maxDatagrams: number;
  private readonly maxBytes: number;
  private readonly timeout: number;
  /** Datagrams completed. */
  reassembled = 0;

  /** `drop(reason, fragments)` counts fragments thrown away. */
  constructor(private readonly drop: (reason: FragmentDropReason, fragments: number) => void, options: ReassemblyOptions = {}) {
    this.maxDatagrams = options.maxDatagrams ?? 16;
    this.maxBytes = options.maxBytes ?? 256 * 1024;
    this.timeout = options.timeout ?? 15_000;
  }

  /** Datagrams in progress. */
  get inProgress(): number { return this.datagrams.size; }
  /** Payload bytes held. */
  get buffered(): number { return this.bufferedBytes; }

  /**
   * Adds one fragment (a checked packet view); returns the whole payload when this fragment
   * completes its datagram, else null. The fragment's bytes are copied.
   */
  add(packet: Ipv4Packet, now: number): Uint8Array | null {
    const start = packet.fragmentOffset;
    const payload = packet.payload;
    const end = start + payload.length;
    const last = !packet.moreFragments;
    // Every fragment but the last carries a multiple of 8 bytes (RFC 791 §3.2).
    if (payload.length === 0 || (!last && payload.length % 8 !== 0)) { this.drop("fragment-bad-length", 1); return null; }
    if (end > IPV4_MAX_DATAGRAM - IPV4_HEADER_LENGTH) { this.drop("fragment-too-large", 1); return null; }
    const key = `${packet.source}/${packet.destination}/${packet.protocol}/${packet.identification}`;
    let datagram = this.datagrams.get(key);
    if (datagram === undefined) {
      if (this.datagrams.size >= this.maxDatagrams) { this.drop("fragment-no-room", 1); return null; }
      datagram = { pieces: [], received: 0, totalLength: -1, deadline: now + this.timeout };
      this.datagrams.set(key, datagram);
      if (datagram.deadline < this.nextDeadline) this.nextDeadline = datagram.deadline;
    }
    // The last fragment fixes the length; nothing may lie beyond it, and it may not change.
    if (last) {
      const highest = datagram.pieces.length > 0 ? datagram.pieces[datagram.pieces.length - 1]!.end : 0;
      if ((datagram.totalLength >= 0 && datagram.totalLength !== end) || highest > end) {
        this.discard(key, datagram, "fragment-inconsistent");
        return null;
      }
    } else if (datagram.totalLength >= 0 && end > datagram.totalLength) {
      this.discard(key, datagram, "fragment-inconsistent");
      return null;
    }
    // Find the insertion point; an exact repeat is ignored, any other overlap is hostile.
    const pieces = datagram.pieces;
    let index = 0;
    while (index < pieces.length && pieces[index]!.start < start) index++;
    const before = index > 0 ? pieces[index - 1]! : null;
    const after = index < pieces.length ? pieces[index]! : null;
    if (after !== null && after.start === start && after.end === end) { this.drop("fragment-duplicate", 1); return null; }
    if ((before !== null && before.end > start) || (after !== null && after.start < end)) {
      this.discard(key, datagram, "fragment-overlap");
      return null;
    }
    if (this.bufferedBytes + payload.length > this.maxBytes) {
      this.drop("fragment-no-room", 1);
      if (pieces.length === 0) this.datagrams.delete(key);
      return null;
    }
    pieces.splice(index, 0, { start, end, data: payload.slice() });
    datagram.received += payload.length;
    this.bufferedBytes += payload.length;
    if (last) datagram.totalLength = end;
    if (datagram.totalLength < 0 || datagram.received !== datagram.totalLength) return null;
    // Pieces never overlap, so covering totalLength bytes means the datagram is whole.
    const whole = new Uint8Array(datagram.totalLength);
    for (const piece of pieces) whole.set(piece.data, piece.start);
    this.bufferedBytes -= datagram.received;
    this.datagrams.delete(key);
    if (this.datagrams.size === 0) this.nextDeadline = Infinity;
    this.reassembled++;
    return whole;
  }

  /**
   * Abandons datagrams whose time is up (RFC 791 §3.2 reassembly timer). Returns at once
   * until the earliest deadline: the event loop calls this on every pass.
   */
  poll(now: number): void {
    if (now < this.nextDeadline) return;
    let next = Infinity;
    for (const [key, datagram] of this.datagrams) {
      if (datagram.deadline <= now) this.discard(key, datagram, "fragment-timeout");
      else if (datagram.deadline < next) next = datagram.deadline;
    }
    this.nextDeadline = next;
  }

  /**
   * The next reassembly deadline (Infinity when none). May be early (another datagram
   * completed or was dropped since), never late: a poll at that time finds the exact one.
   */
  pollAt(): number {
    return this.nextDeadline;
  }

  private discard(key: string, datagram: PartialDatagram, reason: FragmentDropReason): void {
    this.bufferedBytes -= datagram.received;
    this.datagrams.delete(key);
    if (this.datagrams.size === 0) this.nextDeadline = Infinity;
    this.drop(reason, datagram.pieces.length + (reason === "fragment-timeout" ? 0 : 1));
  }
}
