/**
 * Ethernet II frames (IEEE 802.3 §3.2.6, without preamble and FCS): a zero-copy view and a
 * plain representation. MAC addresses are 6-byte Uint8Arrays.
 */
import { ByteView } from "./view.ts";

/** Bytes in an Ethernet II header. */
export const ETHERNET_HEADER_LENGTH = 14;
/** EtherType of IPv4 (RFC 894). */
export const ETHERTYPE_IPV4 = 0x0800;
/** EtherType of ARP (RFC 826). */
export const ETHERTYPE_ARP = 0x0806;
/** ff:ff:ff:ff:ff:ff */
export const BROADCAST_MAC: Uint8Array = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

/** Why an Ethernet frame was rejected. */
export type EthernetError = "ethernet-truncated";

/** A re-bindable view over an Ethernet frame: bind() it to each frame instead of allocating. */
export class EthernetFrame extends ByteView {
  constructor(bytes: Uint8Array = new Uint8Array(ETHERNET_HEADER_LENGTH), offset = 0) {
    super(bytes, offset);
  }

  /** Null when the frame holds a whole header, else the reason. */
  check(): EthernetError | null {
    return this.bytes.length - this.offset < ETHERNET_HEADER_LENGTH ? "ethernet-truncated" : null;
  }

  /** A view of the destination MAC (no copy). */
  get destination(): Uint8Array { return this.bytes.subarray(this.offset, this.offset + 6); }
  set destination(mac: Uint8Array) { this.bytes.set(mac.subarray(0, 6), this.offset); }
  /** A view of the source MAC (no copy). */
  get source(): Uint8Array { return this.bytes.subarray(this.offset + 6, this.offset + 12); }
  set source(mac: Uint8Array) { this.bytes.set(mac.subarray(0, 6), this.offset + 6); }
  get etherType(): number { return (this.bytes[this.offset + 12]! << 8) | this.bytes[this.offset + 13]!; }
  set etherType(value: number) {
    this.bytes[this.offset + 12] = value >>> 8;
    this.bytes[this.offset + 13] = value;
  }
  /** Offset of the payload in `bytes`. */
  get payloadOffset(): number { return this.offset + ETHERNET_HEADER_LENGTH; }
  /** The payload (no copy). */
  get payload(): Uint8Array { return this.bytes.subarray(this.offset + ETHERNET_HEADER_LENGTH); }
}

/** The plain form of an Ethernet header. */
export interface EthernetRepr {
  destination: Uint8Array;
  source: Uint8Array;
  etherType: number;
}

/** Parses a header (MACs are copied) or returns why it cannot. */
export function parseEthernet(frame: EthernetFrame): EthernetRepr | EthernetError {
  const error = frame.check();
  if (error) return error;
  return { destination: frame.destination.slice(), source: frame.source.slice(), etherType: frame.etherType };
}

/** Writes a header into the view (which must hold ETHERNET_HEADER_LENGTH bytes). */
export function emitEthernet(repr: EthernetRepr, frame: EthernetFrame): void {
  frame.destination = repr.destination;
  frame.source = repr.source;
  frame.etherType = repr.etherType;
}

/** Writes a header at `offset` without a view (the transmit hot path: unrolled, no loop in the interpreter). */
export function writeEthernetHeader(bytes: Uint8Array, offset: number, destination: Uint8Array, source: Uint8Array, etherType: number): void {
  const o = offset;
  bytes[o] = destination[0]!; bytes[o + 1] = destination[1]!; bytes[o + 2] = destination[2]!;
  bytes[o + 3] = destination[3]!; bytes[o + 4] = destination[4]!; bytes[o + 5] = destination[5]!;
  bytes[o + 6] = source[0]!; bytes[o + 7] = source[1]!; bytes[o + 8] = source[2]!;
  bytes[o + 9] = source[3]!; bytes[o + 10] = source[4]!; bytes[o + 11] = source[5]!;
  bytes[o + 12] = etherType >>> 8;
  bytes[o + 13] = etherType;
}

/** True when bytes[offset, offset+6) equals `mac`. */
export function macEquals(bytes: Uint8Array, offset: number, mac: Uint8Array): boolean {
  for (let i = 0; i < 6; i++) if (bytes[offset + i] !== mac[i]) return false;
  return true;
}

/** True for a group (multicast or broadcast) address: the I/G bit of the first byte. */
export function isMulticastMac(bytes: Uint8Array, offset = 0): boolean {
  return (bytes[offset]! & 1) === 1;
}

/** "52:54:00:12:34:56" */
export function formatMac(mac: Uint8Array): string {
  return Array.from(mac.subarray(0, 6), (b) => b.toString(16).padStart(2, "0")).join(":");
}
