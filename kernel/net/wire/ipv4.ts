/**
 * IPv4 headers (RFC 791 §3.1): a zero-copy view with checksum verify/fill, a plain
 * representation, and the address helpers the interface needs. Addresses are uint32.
 */
import { checksum } from "./checksum.ts";
import { ByteView } from "./view.ts";

/** Bytes in an IPv4 header without options. */
export const IPV4_HEADER_LENGTH = 20;
/** Largest total length an IPv4 datagram can have (RFC 791 §3.1, 16-bit field). */
export const IPV4_MAX_DATAGRAM = 65535;
/** 255.255.255.255 */
export const IPV4_BROADCAST = 0xffffffff;
/** Flag bits in the 16-bit flags/fragment-offset word (RFC 791 §3.1). */
export const IPV4_DONT_FRAGMENT = 0x4000;
export const IPV4_MORE_FRAGMENTS = 0x2000;

/** Why an IPv4 header was rejected. */
export type Ipv4Error =
  | "ipv4-truncated"
  | "ipv4-bad-version"
  | "ipv4-bad-header-length"
  | "ipv4-bad-total-length"
  | "ipv4-bad-checksum";

/** Reads a big-endian uint16. */
export function readUint16(bytes: Uint8Array, offset: number): number {
  return (bytes[offset]! << 8) | bytes[offset + 1]!;
}
/** Writes a big-endian uint16. */
export function writeUint16(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = value >>> 8;
  bytes[offset + 1] = value;
}
/** Reads a big-endian uint32 (unsigned). */
export function readUint32(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>> 0;
}
/** Writes a big-endian uint32. */
export function writeUint32(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = value >>> 24;
  bytes[offset + 1] = value >>> 16;
  bytes[offset + 2] = value >>> 8;
  bytes[offset + 3] = value;
}

/** A re-bindable view over an IPv4 header at `offset`. */
export class Ipv4Packet extends ByteView {
  constructor(bytes: Uint8Array = new Uint8Array(IPV4_HEADER_LENGTH), offset = 0) {
    super(bytes, offset);
  }

  /**
   * Validates version, header length, total length against the bytes present, and the
   * header checksum. Bytes past totalLength (Ethernet padding) are allowed.
   */
  check(verifyChecksum = true): Ipv4Error | null {
    const available = this.bytes.length - this.offset;
    if (available < IPV4_HEADER_LENGTH) return "ipv4-truncated";
    if (this.version !== 4) return "ipv4-bad-version";
    const headerLength = this.headerLength;
    if (headerLength < IPV4_HEADER_LENGTH) return "ipv4-bad-header-length";
    const totalLength = this.totalLength;
    if (totalLength < headerLength || totalLength > available) return "ipv4-bad-total-length";
    if (verifyChecksum && checksum(this.bytes, this.offset, this.offset + headerLength) !== 0) return "ipv4-bad-checksum";
    return null;
  }

  get version(): number { return this.bytes[this.offset]! >>> 4; }
  /** Header length in bytes (IHL × 4). */
  get headerLength(): number { return (this.bytes[this.offset]! & 0x0f) * 4; }
  get dscpEcn(): number { return this.bytes[this.offset + 1]!; }
  set dscpEcn(value: number) { this.bytes[this.offset + 1] = value; }
  get totalLength(): number { return readUint16(this.bytes, this.offset + 2); }
  set totalLength(value: number) { writeUint16(this.bytes, this.offset + 2, value); }
  get identification(): number { return readUint16(this.bytes, this.offset + 4); }
  set identification(value: number) { writeUint16(this.bytes, this.offset + 4, value); }
  get dontFragment(): boolean { return (this.bytes[this.offset + 6]! & 0x40) !== 0; }
  get moreFragments(): boolean { return (this.bytes[this.offset + 6]! & 0x20) !== 0; }
  /** Fragment offset in bytes (the field counts 8-byte units). */
  get fragmentOffset(): number { return (readUint16(this.bytes, this.offset + 6) & 0x1fff) * 8; }
  /** True when this packet is a fragment (MF set or a non-zero offset). */
  get isFragment(): boolean { return (readUint16(this.bytes, this.offset + 6) & 0x3fff) !== 0; }
  get ttl(): number { return this.bytes[this.offset + 8]!; }
  set ttl(value: number) { this.bytes[this.offset + 8] = value; }
  get protocol(): number { return this.bytes[this.offset + 9]!; }
  get headerChecksum(): number { return readUint16(this.bytes, this.offset + 10); }
  get source(): number { return readUint32(this.bytes, this.offset + 12); }
  set source(value: number) { writeUint32(this.bytes, this.offset + 12, value); }
  get destination(): number { return readUint32(this.bytes, this.offset + 16); }
  set destination(value: number) { writeUint32(this.bytes, this.offset + 16, value); }
  /** Offset of the payload in `bytes`. */
  get payloadOffset(): number { return this.offset + this.headerLength; }
  /** The payload up to totalLength (no copy). */
  get payload(): Uint8Array {
    return this.bytes.subarray(this.offset + this.headerLength, this.offset + this.totalLength);
  }

  /** Recomputes and stores the header checksum. */
  fillChecksum(): void {
    writeUint16(this.bytes, this.offset + 10, 0);
    writeUint16(this.bytes, this.offset + 10, checksum(this.bytes, this.offset, this.offset + this.headerLength));
  }
}

/** The plain form of an IPv4 header (options are not represented; emit writes none). */
export interface Ipv4Repr {
  source: number;
  destination: number;
  protocol: number;
  /** Bytes after the header. */
  payloadLength: number;
  ttl: number;
  identification: number;
  dontFragment: boolean;
  moreFragments: boolean;
  /** In bytes, a multiple of 8. */
  fragmentOffset: number;
}

/** Validates and parses a header, or returns why it cannot. */
export function parseIpv4(packet: Ipv4Packet): Ipv4Repr | Ipv4Error {
  const error = packet.check();
  if (error) return error;
  return {
    source: packet.source,
    destination: packet.destination,
    protocol: packet.protocol,
    payloadLength: packet.totalLength - packet.headerLength,
    ttl: packet.ttl,
    identification: packet.identification,
    dontFragment: packet.dontFragment,
    moreFragments: packet.moreFragments,
    fragmentOffset: packet.fragmentOffset,
  };
}

/** Writes a 20-byte header (with checksum) at the view's offset. */
export function emitIpv4(repr: Ipv4Repr, packet: Ipv4Packet): void {
  writeIpv4Header(packet.bytes, packet.offset, repr.source, repr.destination, repr.protocol, repr.payloadLength,
    repr.identification, repr.ttl,
    (repr.dontFragment ? IPV4_DONT_FRAGMENT : 0) | (repr.moreFragments ? IPV4_MORE_FRAGMENTS : 0) | (repr.fragmentOffset >>> 3));
}

/**
 * Writes a 20-byte header with its checksum, without a view (the transmit hot path).
 * `flagsAndOffset` is the raw 16-bit word: flag bits | fragment offset in 8-byte units.
 */
export function writeIpv4Header(bytes: Uint8Array, offset: number, source: number, destination: number,
  protocol: number, payloadLength: number, identification: number, ttl: number, flagsAndOffset: number): void {
  const totalLength = IPV4_HEADER_LENGTH + payloadLength;
  // The checksum is summed from the values rather than re-read from the bytes (RFC 1071 §2).
  let sum = 0x4500 + totalLength + identification + flagsAndOffset + ((ttl << 8) | protocol) +
    (source >>> 16) + (source & 0xffff) + (destination >>> 16) + (destination & 0xffff);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = ~((sum & 0xffff) + (sum >>> 16)) & 0xffff;
  bytes[offset] = 0x45;
  bytes[offset + 1] = 0;
  bytes[offset + 2] = totalLength >>> 8;
  bytes[offset + 3] = totalLength;
  bytes[offset + 4] = identification >>> 8;
  bytes[offset + 5] = identification;
  bytes[offset + 6] = flagsAndOffset >>> 8;
  bytes[offset + 7] = flagsAndOffset;
  bytes[offset + 8] = ttl;
  bytes[offset + 9] = protocol;
  bytes[offset + 10] = sum >>> 8;
  bytes[offset + 11] = sum;
  bytes[offset + 12] = source >>> 24;
  bytes[offset + 13] = source >>> 16;
  bytes[offset + 14] = source >>> 8;
  bytes[offset + 15] = source;
  bytes[offset + 16] = destination >>> 24;
  bytes[offset + 17] = destination >>> 16;
  bytes[offset + 18] = destination >>> 8;
  bytes[offset + 19] = destination;
}

/** The netmask for a prefix length: 24 -> 0xffffff00. */
export function prefixToNetmask(prefixLength: number): number {
  return prefixLength <= 0 ? 0 : (0xffffffff << (32 - Math.min(prefixLength, 32))) >>> 0;
}

/** True for 224.0.0.0/4. */
export function isMulticastIpv4(address: number): boolean {
  return (address >>> 28) === 0xe;
}
