/**
 * DHCP messages (RFC 2131 §2) and the options the client uses (RFC 2132): a view over the
 * fixed part and a plain representation with parse/emit. Addresses are uint32.
 */
import { readUint16, readUint32, writeUint16, writeUint32 } from "./ipv4.ts";

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;
/** Fixed part (236 bytes) + magic cookie (RFC 2131 §3). */
export const DHCP_FIXED_LENGTH = 240;
export const DHCP_MAGIC_COOKIE = 0x63825363;
export const DHCP_OP_REQUEST = 1;
export const DHCP_OP_REPLY = 2;
/** Message types, option 53 (RFC 2132 §9.6). */
export const DHCP_DISCOVER = 1;
export const DHCP_OFFER = 2;
export const DHCP_REQUEST = 3;
export const DHCP_DECLINE = 4;
export const DHCP_ACK = 5;
export const DHCP_NAK = 6;
export const DHCP_RELEASE = 7;
export const DHCP_INFORM = 8;

/** Option codes (RFC 2132). */
export const DhcpOption = {
  Pad: 0,
  SubnetMask: 1,
  Router: 3,
  DnsServer: 6,
  HostName: 12,
  RequestedAddress: 50,
  LeaseTime: 51,
  Overload: 52,
  MessageType: 53,
  ServerIdentifier: 54,
  ParameterRequestList: 55,
  MaxMessageSize: 57,
  RenewalTime: 58,
  RebindingTime: 59,
  ClientIdentifier: 61,
  End: 255,
} as const;

/** Why a DHCP message was rejected. */
export type DhcpError = "dhcp-truncated" | "dhcp-bad-cookie" | "dhcp-unsupported-hardware" | "dhcp-bad-option";

/** The plain form of a DHCP message. Absent options are undefined. */
export interface DhcpRepr {
  op: number;
  transactionId: number;
  secondsElapsed: number;
  /** The BROADCAST flag (RFC 2131 §4.1): ask the server to broadcast its replies. */
  broadcast: boolean;
  clientAddress: number;
  yourAddress: number;
  serverAddress: number;
  relayAddress: number;
  clientHardware: Uint8Array;
  messageType?: number;
  subnetMask?: number;
  routers?: number[];
  dnsServers?: number[];
  hostName?: string;
  requestedAddress?: number;
  /** Seconds; 0xffffffff means infinite. */
  leaseTime?: number;
  renewalTime?: number;
  rebindingTime?: number;
  serverIdentifier?: number;
  parameterRequestList?: number[];
  maxMessageSize?: number;
  clientIdentifier?: Uint8Array;
}

/** Reads options from bytes[start, end) into `repr`; returns the overload value or an error. */
function parseOptions(bytes: Uint8Array, start: number, end: number, repr: DhcpRepr): number | DhcpError {
  let overload = 0;
  let i = start;
  while (i < end) {
    const code = bytes[i]!;
    if (code === DhcpOption.Pad) { i++; continue; }
    if (code === DhcpOption.End) return overload;
    if (i + 1 >= end) return "dhcp-bad-option";
    const length = bytes[i + 1]!;
    const value = i + 2;
    if (value + length > end) return "dhcp-bad-option";
    const addresses = (): number[] | null => {
      if (length === 0 || length % 4 !== 0) return null;
      const list: number[] = [];
      for (let j = 0; j < length; j += 4) list.push(readUint32(bytes, value + j));
      return list;
    };
    switch (code) {
      case DhcpOption.MessageType:
        if (length !== 1) return "dhcp-bad-option";
        repr.messageType = bytes[value]!;
        break;
      case DhcpOption.SubnetMask:
      case DhcpOption.RequestedAddress:
      case DhcpOption.ServerIdentifier:
      case DhcpOption.LeaseTime:
      case DhcpOption.RenewalTime:
      case DhcpOption.RebindingTime: {
        if (length !== 4) return "dhcp-bad-option";
        const number = readUint32(bytes, value);
        if (code === DhcpOption.SubnetMask) repr.subnetMask = number;
        else if (code === DhcpOption.RequestedAddress) repr.requestedAddress = number;
        else if (code === DhcpOption.ServerIdentifier) repr.serverIdentifier = number;
        else if (code === DhcpOption.LeaseTime) repr.leaseTime = number;
        else if (code === DhcpOption.RenewalTime) repr.renewalTime = number;
        else repr.rebindingTime = number;
        break;
      }
      case DhcpOption.Router:
      case DhcpOption.DnsServer: {
        const list = addresses();
        if (!list) return "dhcp-bad-option";
        if (code === DhcpOption.Router) repr.routers = list;
        else repr.dnsServers = list;
        break;
      }
      case DhcpOption.HostName:
        repr.hostName = String.fromCharCode(...bytes.subarray(value, value + length));
        break;
      case DhcpOption.ParameterRequestList:
        repr.parameterRequestList = Array.from(bytes.subarray(value, value + length));
        break;
      case DhcpOption.MaxMessageSize:
        if (length !== 2) return "dhcp-bad-option";
        repr.maxMessageSize = readUint16(bytes, value);
        break;
      case DhcpOption.ClientIdentifier:
        repr.clientIdentifier = bytes.slice(value, value + length);
        break;
      case DhcpOption.Overload:
        if (length !== 1) return "dhcp-bad-option";
        overload = bytes[value]!;
        break;
      default:
        break; // unknown options are skipped (RFC 2131 §4.1: clients ignore what they do not use)
    }
    i = value + length;
  }
  return overload; // a missing End option is tolerated, as most clients do
}

/** Parses a DHCP message (the UDP payload), or returns why it cannot. */
export function parseDhcp(bytes: Uint8Array): DhcpRepr | DhcpError {
  if (bytes.length < DHCP_FIXED_LENGTH) return "dhcp-truncated";
  if (readUint32(bytes, 236) !== DHCP_MAGIC_COOKIE) return "dhcp-bad-cookie";
  if (bytes[1] !== 1 || bytes[2] !== 6) return "dhcp-unsupported-hardware";
  const repr: DhcpRepr = {
    op: bytes[0]!,
    transactionId: readUint32(bytes, 4),
    secondsElapsed: readUint16(bytes, 8),
    broadcast: (bytes[10]! & 0x80) !== 0,
    clientAddress: readUint32(bytes, 12),
    yourAddress: readUint32(bytes, 16),
    serverAddress: readUint32(bytes, 20),
    relayAddress: readUint32(bytes, 24),
    clientHardware: bytes.slice(28, 34),
  };
  const overload = parseOptions(bytes, DHCP_FIXED_LENGTH, bytes.length, repr);
  if (typeof overload === "string") return overload;
  // Option 52 (RFC 2132 §9.3): 1 = options continue in `file`, 2 = in `sname`, 3 = both.
  if (overload & 1) {
    const result = parseOptions(bytes, 108, 236, repr);
    if (typeof result === "string") return result;
  }
  if (overload & 2) {
    const result = parseOptions(bytes, 44, 108, repr);
    if (typeof result === "string") return result;
  }
  return repr;
}

/** Bytes emitDhcp() writes for a representation (options included, padded to 300 as BOOTP expects). */
export function dhcpLength(repr: DhcpRepr): number {
  let length = DHCP_FIXED_LENGTH + 1; // End
  if (repr.messageType !== undefined) length += 3;
  for (const value of [repr.subnetMask, repr.requestedAddress, repr.serverIdentifier, repr.leaseTime, repr.renewalTime, repr.rebindingTime]) {
    if (value !== undefined) length += 6;
  }
  if (repr.routers?.length) length += 2 + 4 * repr.routers.length;
  if (repr.dnsServers?.length) length += 2 + 4 * repr.dnsServers.length;
  if (repr.hostName !== undefined) length += 2 + Math.min(repr.hostName.length, 255);
  if (repr.parameterRequestList) length += 2 + repr.parameterRequestList.length;
  if (repr.maxMessageSize !== undefined) length += 4;
  if (repr.clientIdentifier) length += 2 + repr.clientIdentifier.length;
  return Math.max(length, 300);
}

/** Writes the message into bytes[0, dhcpLength(repr)). */
export function emitDhcp(repr: DhcpRepr, bytes: Uint8Array): void {
  const end = dhcpLength(repr);
  bytes.fill(0, 0, end);
  bytes[0] = repr.op;
  bytes[1] = 1;
  bytes[2] = 6;
  writeUint32(bytes, 4, repr.transactionId);
  writeUint16(bytes, 8, repr.secondsElapsed);
  writeUint16(bytes, 10, repr.broadcast ? 0x8000 : 0);
  writeUint32(bytes, 12, repr.clientAddress);
  writeUint32(bytes, 16, repr.yourAddress);
  writeUint32(bytes, 20, repr.serverAddress);
  writeUint32(bytes, 24, repr.relayAddress);
  bytes.set(repr.clientHardware.subarray(0, 6), 28);
  writeUint32(bytes, 236, DHCP_MAGIC_COOKIE);
  let i = DHCP_FIXED_LENGTH;
  const option = (code: number, value: ArrayLike<number>): void => {
    bytes[i] = code;
    bytes[i + 1] = value.length;
    bytes.set(value, i + 2);
    i += 2 + value.length;
  };
  const address = (value: number): number[] => [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255];
  if (repr.messageType !== undefined) option(DhcpOption.MessageType, [repr.messageType]);
  if (repr.clientIdentifier) option(DhcpOption.ClientIdentifier, repr.clientIdentifier);
  if (repr.requestedAddress !== undefined) option(DhcpOption.RequestedAddress, address(repr.requestedAddress));
  if (repr.serverIdentifier !== undefined) option(DhcpOption.ServerIdentifier, address(repr.serverIdentifier));
  if (repr.leaseTime !== undefined) option(DhcpOption.LeaseTime, address(repr.leaseTime));
  if (repr.renewalTime !== undefined) option(DhcpOption.RenewalTime, address(repr.renewalTime));
  if (repr.rebindingTime !== undefined) option(DhcpOption.RebindingTime, address(repr.rebindingTime));
  if (repr.subnetMask !== undefined) option(DhcpOption.SubnetMask, address(repr.subnetMask));
  if (repr.routers?.length) option(DhcpOption.Router, repr.routers.flatMap(address));
  if (repr.dnsServers?.length) option(DhcpOption.DnsServer, repr.dnsServers.flatMap(address));
  if (repr.hostName !== undefined) option(DhcpOption.HostName, Array.from(repr.hostName.slice(0, 255), (c) => c.charCodeAt(0) & 255));
  if (repr.parameterRequestList) option(DhcpOption.ParameterRequestList, repr.parameterRequestList);
  if (repr.maxMessageSize !== undefined) option(DhcpOption.MaxMessageSize, [repr.maxMessageSize >>> 8, repr.maxMessageSize & 255]);
  bytes[i] = DhcpOption.End;
}
