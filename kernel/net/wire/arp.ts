/**
 * ARP for IPv4 over Ethernet (RFC 826): a zero-copy view and a plain representation.
 * Only hardware type 1 (Ethernet) with protocol 0x0800 (IPv4) is accepted.
 */
import { readUint16, readUint32, writeUint16, writeUint32 } from "./ipv4.ts";
import { ByteView } from "./view.ts";

/** Bytes in an Ethernet/IPv4 ARP packet. */
export const ARP_PACKET_LENGTH = 28;
export const ARP_OPERATION_REQUEST = 1;
export const ARP_OPERATION_REPLY = 2;

/** Why an ARP packet was rejected. */
export type ArpError = "arp-truncated" | "arp-unsupported" | "arp-bad-operation";

/** A re-bindable view over an ARP packet. */
export class ArpPacket extends ByteView {
  constructor(bytes: Uint8Array = new Uint8Array(ARP_PACKET_LENGTH), offset = 0) {
    super(bytes, offset);
  }

  /** Null for a well-formed Ethernet/IPv4 request or reply, else the reason. */
  check(): ArpError | null {
    if (this.bytes.length - this.offset < ARP_PACKET_LENGTH) return "arp-truncated";
    if (this.hardwareType !== 1 || this.protocolType !== 0x0800 || this.hardwareLength !== 6 || this.protocolLength !== 4) {
      return "arp-unsupported";
    }
    const operation = this.operation;
    if (operation !== ARP_OPERATION_REQUEST && operation !== ARP_OPERATION_REPLY) return "arp-bad-operation";
    return null;
  }

  get hardwareType(): number { return readUint16(this.bytes, this.offset); }
  get protocolType(): number { return readUint16(this.bytes, this.offset + 2); }
  get hardwareLength(): number { return this.bytes[this.offset + 4]!; }
  get protocolLength(): number { return this.bytes[this.offset + 5]!; }
  get operation(): number { return readUint16(this.bytes, this.offset + 6); }
  /** A view of the sender MAC (no copy). */
  get senderHardware(): Uint8Array { return this.bytes.subarray(this.offset + 8, this.offset + 14); }
  get senderProtocol(): number { return readUint32(this.bytes, this.offset + 14); }
  /** A view of the target MAC (no copy). */
  get targetHardware(): Uint8Array { return this.bytes.subarray(this.offset + 18, this.offset + 24); }
  get targetProtocol(): number { return readUint32(this.bytes, this.offset + 24); }
}

/** The plain form of an ARP packet. */
export interface ArpRepr {
  operation: number;
  senderHardware: Uint8Array;
  senderProtocol: number;
  targetHardware: Uint8Array;
  targetProtocol: number;
}

/** Validates and parses a packet (MACs are copied), or returns why it cannot. */
export function parseArp(packet: ArpPacket): ArpRepr | ArpError {
  const error = packet.check();
  if (error) return error;
  return {
    operation: packet.operation,
    senderHardware: packet.senderHardware.slice(),
    senderProtocol: packet.senderProtocol,
    targetHardware: packet.targetHardware.slice(),
    targetProtocol: packet.targetProtocol,
  };
}

/** Writes the 28-byte packet at the view's offset. */
export function emitArp(repr: ArpRepr, packet: ArpPacket): void {
  const { bytes, offset } = packet;
  writeUint16(bytes, offset, 1);
  writeUint16(bytes, offset + 2, 0x0800);
  bytes[offset + 4] = 6;
  bytes[offset + 5] = 4;
  writeUint16(bytes, offset + 6, repr.operation);
  bytes.set(repr.senderHardware.subarray(0, 6), offset + 8);
  writeUint32(bytes, offset + 14, repr.senderProtocol);
  bytes.set(repr.targetHardware.subarray(0, 6), offset + 18);
  writeUint32(bytes, offset + 24, repr.targetProtocol);
}
