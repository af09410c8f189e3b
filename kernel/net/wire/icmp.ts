/**
 * ICMPv4 (RFC 792): a zero-copy view with checksum verify/fill and plain representations
 * of the messages the stack uses: echo request/reply and destination unreachable.
 */
import { checksum } from "./checksum.ts";
import { readUint16, writeUint16 } from "./ipv4.ts";

/** Bytes in the fixed ICMP header (type, code, checksum, 4 bytes of rest-of-header). */
export const ICMP_HEADER_LENGTH = 8;
export const ICMP_ECHO_REPLY = 0;
export const ICMP_DESTINATION_UNREACHABLE = 3;
export const ICMP_ECHO_REQUEST = 8;
export const ICMP_TIME_EXCEEDED = 11;
/** Destination-unreachable codes (RFC 792). */
export const ICMP_PROTOCOL_UNREACHABLE = 2;
export const ICMP_PORT_UNREACHABLE = 3;

/** Why an ICMP message was rejected. */
export type IcmpError = "icmp-truncated" | "icmp-bad-checksum";

/** A re-bindable view over an ICMP message of `length` bytes at `offset`. */
export class IcmpPacket {
  bytes: Uint8Array;
  offset: number;
  length: number;

  constructor(bytes: Uint8Array = new Uint8Array(ICMP_HEADER_LENGTH), offset = 0, length = bytes.length - offset) {
    this.bytes = bytes;
    this.offset = offset;
    this.length = length;
  }

  /** Points the view at another message; returns this. */
  bind(bytes: Uint8Array, offset = 0, length = bytes.length - offset): this {
    this.bytes = bytes;
    this.offset = offset;
    this.length = length;
    return this;
  }

  /** Null when the header is present and the checksum over the whole message is right. */
  check(): IcmpError | null {
    if (this.length < ICMP_HEADER_LENGTH || this.offset + this.length > this.bytes.length) return "icmp-truncated";
    if (checksum(this.bytes, this.offset, this.offset + this.length) !== 0) return "icmp-bad-checksum";
    return null;
  }

  get type(): number { return this.bytes[this.offset]!; }
  set type(value: number) { this.bytes[this.offset] = value; }
  get code(): number { return this.bytes[this.offset + 1]!; }
  set code(value: number) { this.bytes[this.offset + 1] = value; }
  get checksum(): number { return readUint16(this.bytes, this.offset + 2); }
  /** Echo identifier (echo messages only). */
  get identifier(): number { return readUint16(this.bytes, this.offset + 4); }
  set identifier(value: number) { writeUint16(this.bytes, this.offset + 4, value); }
  /** Echo sequence number (echo messages only). */
  get sequence(): number { return readUint16(this.bytes, this.offset + 6); }
  set sequence(value: number) { writeUint16(this.bytes, this.offset + 6, value); }
  /** Bytes after the 8-byte header (no copy). */
  get data(): Uint8Array { return this.bytes.subarray(this.offset + ICMP_HEADER_LENGTH, this.offset + this.length); }

  /** Computes and stores the checksum over the whole message. */
  fillChecksum(): void {
    writeUint16(this.bytes, this.offset + 2, 0);
    writeUint16(this.bytes, this.offset + 2, checksum(this.bytes, this.offset, this.offset + this.length));
  }
}

/** The plain form of the ICMP messages the stack understands. */
export type IcmpRepr =
  | { kind: "echo-request" | "echo-reply"; identifier: number; sequence: number; data: Uint8Array }
  | { kind: "destination-unreachable"; code: number; original: Uint8Array }
  | { kind: "other"; type: number; code: number; data: Uint8Array };

/** Validates and parses a message (data is a view, not a copy), or returns why it cannot. */
export function parseIcmp(packet: IcmpPacket): IcmpRepr | IcmpError {
  const error = packet.check();
  if (error) return error;
  switch (packet.type) {
    case ICMP_ECHO_REQUEST:
    case ICMP_ECHO_REPLY:
      return {
        kind: packet.type === ICMP_ECHO_REQUEST ? "echo-request" : "echo-reply",
        identifier: packet.identifier, sequence: packet.sequence, data: packet.data,
      };
    case ICMP_DESTINATION_UNREACHABLE:
      return { kind: "destination-unreachable", code: packet.code, original: packet.data };
    default:
      return { kind: "other", type: packet.type, code: packet.code, data: packet.data };
  }
}

/** Bytes emitIcmp() writes for a representation. */
export function icmpLength(repr: IcmpRepr): number {
  return ICMP_HEADER_LENGTH + (repr.kind === "destination-unreachable" ? repr.original.length : repr.data.length);
}

/** Writes the message with its checksum; the view must hold icmpLength(repr) bytes. */
export function emitIcmp(repr: IcmpRepr, packet: IcmpPacket): void {
  const { bytes, offset } = packet;
  bytes.fill(0, offset, offset + ICMP_HEADER_LENGTH);
  packet.length = icmpLength(repr);
  switch (repr.kind) {
    case "echo-request":
    case "echo-reply":
      packet.type = repr.kind === "echo-request" ? ICMP_ECHO_REQUEST : ICMP_ECHO_REPLY;
      packet.identifier = repr.identifier;
      packet.sequence = repr.sequence;
      bytes.set(repr.data, offset + ICMP_HEADER_LENGTH);
      break;
    case "destination-unreachable":
      packet.type = ICMP_DESTINATION_UNREACHABLE;
      packet.code = repr.code;
      bytes.set(repr.original, offset + ICMP_HEADER_LENGTH);
      break;
    case "other":
      packet.type = repr.type;
      packet.code = repr.code;
      bytes.set(repr.data, offset + ICMP_HEADER_LENGTH);
      break;
  }
  packet.fillChecksum();
}
