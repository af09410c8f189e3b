/**
 * TCP header wire format (RFC 9293 §3.1) and its options: MSS (§3.2), window scale and
 * timestamps (RFC 7323 §2.2, §3.2), SACK-permitted (RFC 2018 §2; SACK blocks are parsed
 * past, not used).
 *
 * Like smoltcp: free functions read and write fields straight from a byte view (no object
 * per segment), `parseTcpOptions` fills a caller-owned `TcpOptions`, and `writeTcpHeader`
 * emits a `TcpHeaderFields` representation into a segment buffer.
 */
import { finishChecksum, pseudoHeaderSum, sumWords } from "./checksum.ts";

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;

/** Size of the header without options. */
export const TCP_HEADER_LENGTH = 20;

const OPTION_END = 0;
const OPTION_NOP = 1;
const OPTION_MSS = 2;
const OPTION_WINDOW_SCALE = 3;
const OPTION_SACK_PERMITTED = 4;
const OPTION_TIMESTAMPS = 8;

/** Source port (bytes 0–1). */
export function tcpSourcePort(b: Uint8Array): number { return (b[0]! << 8) | b[1]!; }
/** Destination port (bytes 2–3). */
export function tcpDestinationPort(b: Uint8Array): number { return (b[2]! << 8) | b[3]!; }
/** Sequence number, uint32. */
export function tcpSequence(b: Uint8Array): number { return ((b[4]! << 24) | (b[5]! << 16) | (b[6]! << 8) | b[7]!) >>> 0; }
/** Acknowledgment number, uint32. */
export function tcpAcknowledgment(b: Uint8Array): number { return ((b[8]! << 24) | (b[9]! << 16) | (b[10]! << 8) | b[11]!) >>> 0; }
/** Header length in bytes (data offset × 4). */
export function tcpHeaderLength(b: Uint8Array): number { return (b[12]! >> 4) * 4; }
/** The eight flag bits (CWR…FIN); the NS bit is ignored. */
export function tcpFlags(b: Uint8Array): number { return b[13]!; }
/** Raw (unscaled) window field. */
export function tcpWindow(b: Uint8Array): number { return (b[14]! << 8) | b[15]!; }
/** Checksum field as stored. */
export function tcpChecksumField(b: Uint8Array): number { return (b[16]! << 8) | b[17]!; }

/**
 * True when `segment` is long enough to hold its own header and the header length is sane
 * (≥ 20 bytes, within the segment). Call this before reading options or payload.
 */
export function tcpHeaderValid(segment: Uint8Array): boolean {
  if (segment.length < TCP_HEADER_LENGTH) return false;
  const headerLength = tcpHeaderLength(segment);
  return headerLength >= TCP_HEADER_LENGTH && headerLength <= segment.length;
}

/** The checksum over pseudo-header + segment (RFC 9293 §3.1); 0 when a received segment is intact. */
export function tcpChecksum(source: number, destination: number, segment: Uint8Array): number {
  return finishChecksum(sumWords(segment, 0, segment.length, pseudoHeaderSum(source, destination, 6, segment.length)));
}

/** The options this stack understands, parsed from one segment (-1 / false: absent). */
export interface TcpOptions {
  maxSegmentSize: number;
  windowScale: number;
  sackPermitted: boolean;
  hasTimestamps: boolean;
  timestampValue: number;
  timestampEcho: number;
}

/** A blank options record (reuse one per stack: parsing fills it in place). */
export function createTcpOptions(): TcpOptions {
  return { maxSegmentSize: -1, windowScale: -1, sackPermitted: false, hasTimestamps: false, timestampValue: 0, timestampEcho: 0 };
}

/**
 * Parses the options of a segment (at segment[offset…]) whose header was checked with
 * tcpHeaderValid() into `out`.
 * Returns false for a malformed option list (length 0/1, running past the header); unknown
 * options are skipped (RFC 9293 §3.1: "must be prepared to handle an illegal option length").
 */
export function parseTcpOptions(segment: Uint8Array, out: TcpOptions, offset = 0): boolean {
  out.maxSegmentSize = -1;
  out.windowScale = -1;
  out.sackPermitted = false;
  out.hasTimestamps = false;
  const end = offset + (segment[offset + 12]! >> 4) * 4;
  let i = offset + TCP_HEADER_LENGTH;
  while (i < end) {
    const kind = segment[i]!;
    if (kind === OPTION_END) break;
    if (kind === OPTION_NOP) { i++; continue; }
    if (i + 1 >= end) return false;
    const length = segment[i + 1]!;
    if (length < 2 || i + length > end) return false;
    switch (kind) {
      case OPTION_MSS:
        if (length !== 4) return false;
        out.maxSegmentSize = (segment[i + 2]! << 8) | segment[i + 3]!;
        break;
      case OPTION_WINDOW_SCALE:
        if (length !== 3) return false;
        // RFC 7323 §2.3: a shift above 14 is treated as 14.
        out.windowScale = Math.min(segment[i + 2]!, 14);
        break;
      case OPTION_SACK_PERMITTED:
        if (length !== 2) return false;
        out.sackPermitted = true;
        break;
      case OPTION_TIMESTAMPS:
        if (length !== 10) return false;
        out.hasTimestamps = true;
        out.timestampValue = ((segment[i + 2]! << 24) | (segment[i + 3]! << 16) | (segment[i + 4]! << 8) | segment[i + 5]!) >>> 0;
        out.timestampEcho = ((segment[i + 6]! << 24) | (segment[i + 7]! << 16) | (segment[i + 8]! << 8) | segment[i + 9]!) >>> 0;
        break;
      default:
        break; // SACK blocks (5), MD5 (19), etc.: ignored.
    }
    i += length;
  }
  return true;
}

/** The header fields of a segment to emit (the plain representation). */
export interface TcpHeaderFields {
  sourcePort: number;
  destinationPort: number;
  sequence: number;
  acknowledgment: number;
  flags: number;
  /** Already scaled down: the 16-bit field value. */
  window: number;
  /** MSS option value, or -1 for none (SYN segments only). */
  maxSegmentSize: number;
  /** Window-scale shift to offer, or -1 for none (SYN segments only). */
  windowScale: number;
  /** Offer SACK-permitted (SYN segments only). */
  sackPermitted: boolean;
  /** Include the timestamps option. */
  hasTimestamps: boolean;
  timestampValue: number;
  timestampEcho: number;
}

/** Header length (with options, padded to 4) that writeTcpHeader() will produce for `h`. */
export function tcpHeaderLengthFor(h: TcpHeaderFields): number {
  let length = TCP_HEADER_LENGTH;
  if (h.maxSegmentSize >= 0) length += 4;
  if (h.windowScale >= 0) length += 4; // NOP + 3
  if (h.hasTimestamps) length += 12; // NOP NOP + 10, or SACK-permitted + 10
  if (h.sackPermitted && !h.hasTimestamps) length += 4; // NOP NOP + 2
  return length;
}

/**
 * Writes the header of `h` at segment[offset…] with a zero checksum; returns the header
 * length. Option layout follows Linux (MSS, SACK-perm+TS, NOP+WS) so that every option is
 * 4-byte aligned. Every segment sent goes through here, so it makes no calls of its own (a
 * call costs more than the byte stores it would save writing out).
 */
export function writeTcpHeader(segment: Uint8Array, h: TcpHeaderFields, offset = 0): number {
  const o = offset;
  const hasTimestamps = h.hasTimestamps;
  const maxSegmentSize = h.maxSegmentSize, windowScale = h.windowScale, sackPermitted = h.sackPermitted;
  // tcpHeaderLengthFor(h), written out.
  let headerLength = hasTimestamps ? TCP_HEADER_LENGTH + 12 : TCP_HEADER_LENGTH;
  if (maxSegmentSize >= 0) headerLength += 4;
  if (windowScale >= 0) headerLength += 4;
  if (sackPermitted && !hasTimestamps) headerLength += 4;
  const sequence = h.sequence, acknowledgment = h.acknowledgment, window = h.window;
  segment[o] = h.sourcePort >> 8; segment[o + 1] = h.sourcePort;
  segment[o + 2] = h.destinationPort >> 8; segment[o + 3] = h.destinationPort;
  segment[o + 4] = sequence >>> 24; segment[o + 5] = sequence >>> 16; segment[o + 6] = sequence >>> 8; segment[o + 7] = sequence;
  segment[o + 8] = acknowledgment >>> 24; segment[o + 9] = acknowledgment >>> 16;
  segment[o + 10] = acknowledgment >>> 8; segment[o + 11] = acknowledgment;
  segment[o + 12] = (headerLength / 4) << 4;
  segment[o + 13] = h.flags;
  segment[o + 14] = window >> 8; segment[o + 15] = window;
  segment[o + 16] = 0; segment[o + 17] = 0; segment[o + 18] = 0; segment[o + 19] = 0;
  let i = o + TCP_HEADER_LENGTH;
  if (maxSegmentSize >= 0) {
    segment[i] = OPTION_MSS; segment[i + 1] = 4; segment[i + 2] = maxSegmentSize >> 8; segment[i + 3] = maxSegmentSize;
    i += 4;
  }
  if (hasTimestamps) {
    if (sackPermitted) {
      segment[i] = OPTION_SACK_PERMITTED; segment[i + 1] = 2;
    } else {
      segment[i] = OPTION_NOP; segment[i + 1] = OPTION_NOP;
    }
    segment[i + 2] = OPTION_TIMESTAMPS; segment[i + 3] = 10;
    const value = h.timestampValue, echo = h.timestampEcho;
    segment[i + 4] = value >>> 24; segment[i + 5] = value >>> 16; segment[i + 6] = value >>> 8; segment[i + 7] = value;
    segment[i + 8] = echo >>> 24; segment[i + 9] = echo >>> 16; segment[i + 10] = echo >>> 8; segment[i + 11] = echo;
    i += 12;
  }
  if (sackPermitted && !hasTimestamps) {
    segment[i] = OPTION_NOP; segment[i + 1] = OPTION_NOP; segment[i + 2] = OPTION_SACK_PERMITTED; segment[i + 3] = 2;
    i += 4;
  }
  if (windowScale >= 0) {
    segment[i] = OPTION_NOP; segment[i + 1] = OPTION_WINDOW_SCALE; segment[i + 2] = 3; segment[i + 3] = windowScale;
  }
  return headerLength;
}

/** Computes and stores the checksum of a fully written segment. */
export function fillTcpChecksum(source: number, destination: number, segment: Uint8Array): void {
  segment[16] = 0;
  segment[17] = 0;
  const sum = tcpChecksum(source, destination, segment);
  segment[16] = sum >> 8;
  segment[17] = sum;
}
