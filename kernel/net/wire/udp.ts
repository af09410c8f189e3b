/**
 * UDP headers (RFC 768): a zero-copy view with pseudo-header checksum verify/fill and a
 * plain representation.
 */
import { finishChecksum, pseudoHeaderSum, sumWords } from "./checksum.ts";
import { readUint16, writeUint16 } from "./ipv4.ts";
import { PROTOCOL_UDP } from "../ip.ts";

/** Bytes in a UDP header. */
export const UDP_HEADER_LENGTH = 8;

/** Why a UDP datagram was rejected. */
export type UdpError = "udp-truncated" | "udp-bad-length" | "udp-bad-checksum" | "udp-zero-port";

/** A re-bindable view over a UDP datagram (the whole IP payload). */
export class UdpDatagram {
  bytes: Uint8Array;
  offset: number;
  /** Bytes of the IP payload that belong to this datagram's buffer (from offset). */
  available: number;

  constructor(bytes: Uint8Array = new Uint8Array(UDP_HEADER_LENGTH), offset = 0, available = bytes.length - offset) {
    this.bytes = bytes;
    this.offset = offset;
    this.available = available;
  }

  /** Points the view at another datagram; returns this. */
  bind(bytes: Uint8Array, offset = 0, available = bytes.length - offset): this {
    this.bytes = bytes;
    this.offset = offset;
    this.available = available;
    return this;
  }

  /**
   * Validates the length field against the IP payload and, when the checksum field is
   * non-zero, the checksum over the pseudo-header (RFC 768; zero means "not computed").
   */
  check(source: number, destination: number): UdpError | null {
    if (this.available < UDP_HEADER_LENGTH) return "udp-truncated";
    const length = this.length;
    if (length < UDP_HEADER_LENGTH || length > this.available) return "udp-bad-length";
    if (this.destinationPort === 0) return "udp-zero-port";
    if (this.checksum !== 0 && !this.verifyChecksum(source, destination)) return "udp-bad-checksum";
    return null;
  }

  get sourcePort(): number { return readUint16(this.bytes, this.offset); }
  set sourcePort(value: number) { writeUint16(this.bytes, this.offset, value); }
  get destinationPort(): number { return readUint16(this.bytes, this.offset + 2); }
  set destinationPort(value: number) { writeUint16(this.bytes, this.offset + 2, value); }
  /** Header + payload length. */
  get length(): number { return readUint16(this.bytes, this.offset + 4); }
  set length(value: number) { writeUint16(this.bytes, this.offset + 4, value); }
  get checksum(): number { return readUint16(this.bytes, this.offset + 6); }
  /** The payload (no copy). */
  get payload(): Uint8Array { return this.bytes.subarray(this.offset + UDP_HEADER_LENGTH, this.offset + this.length); }

  /** True when the checksum over pseudo-header, header and payload is correct. */
  verifyChecksum(source: number, destination: number): boolean {
    const length = this.length;
    const sum = sumWords(this.bytes, this.offset, this.offset + length, pseudoHeaderSum(source, destination, PROTOCOL_UDP, length));
    return finishChecksum(sum) === 0;
  }

  /** Computes and stores the checksum (a computed 0 is sent as 0xffff, RFC 768). */
  fillChecksum(source: number, destination: number): void {
    writeUint16(this.bytes, this.offset + 6, 0);
    const length = this.length;
    const value = finishChecksum(sumWords(this.bytes, this.offset, this.offset + length, pseudoHeaderSum(source, destination, PROTOCOL_UDP, length)));
    writeUint16(this.bytes, this.offset + 6, value === 0 ? 0xffff : value);
  }
}

/** The plain form of a UDP header. */
export interface UdpRepr {
  sourcePort: number;
  destinationPort: number;
  payloadLength: number;
}

/** Validates and parses a datagram, or returns why it cannot. */
export function parseUdp(datagram: UdpDatagram, source: number, destination: number): UdpRepr | UdpError {
  const error = datagram.check(source, destination);
  if (error) return error;
  return { sourcePort: datagram.sourcePort, destinationPort: datagram.destinationPort, payloadLength: datagram.length - UDP_HEADER_LENGTH };
}

/** Writes the header and checksum; the payload must already be in place after the header. */
export function emitUdp(repr: UdpRepr, datagram: UdpDatagram, source: number, destination: number): void {
  datagram.sourcePort = repr.sourcePort;
  datagram.destinationPort = repr.destinationPort;
  datagram.length = UDP_HEADER_LENGTH + repr.payloadLength;
  datagram.fillChecksum(source, destination);
}
