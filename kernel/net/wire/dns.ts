/**
 * DNS messages (RFC 1035 §4.1): header, questions and resource records, with name
 * compression (§4.1.4) on parse. Compression pointers must point strictly backwards and a
 * name is limited to 255 bytes and 128 labels, so crafted loops are rejected, never followed.
 */
import { readUint16, readUint32, writeUint16, writeUint32 } from "./ipv4.ts";

export const DNS_PORT = 53;
export const DNS_HEADER_LENGTH = 12;
export const DNS_TYPE_A = 1;
export const DNS_TYPE_NS = 2;
export const DNS_TYPE_CNAME = 5;
export const DNS_TYPE_SOA = 6;
export const DNS_TYPE_AAAA = 28;
export const DNS_CLASS_IN = 1;
/** Response codes (RFC 1035 §4.1.1). */
export const DNS_RCODE_NO_ERROR = 0;
export const DNS_RCODE_FORMAT_ERROR = 1;
export const DNS_RCODE_SERVER_FAILURE = 2;
export const DNS_RCODE_NAME_ERROR = 3;
/** Longest encoded name (RFC 1035 §2.3.4). */
export const DNS_MAX_NAME_LENGTH = 255;

/** Why a DNS message or name was rejected. */
export type DnsError =
  | "dns-truncated"
  | "dns-bad-label"
  | "dns-name-too-long"
  | "dns-bad-pointer"
  | "dns-bad-record";

/** One question (RFC 1035 §4.1.2). */
export interface DnsQuestion {
  name: string;
  type: number;
  class: number;
}

/** One resource record (RFC 1035 §4.1.3); `address` is set for A, `target` for CNAME/NS. */
export interface DnsRecord {
  name: string;
  type: number;
  class: number;
  /** Seconds (RFC 2181 §8: values with the top bit set are treated as 0). */
  ttl: number;
  /** The raw RDATA (a copy). */
  data: Uint8Array;
  address?: number;
  target?: string;
}

/** The plain form of a DNS message. */
export interface DnsMessage {
  id: number;
  response: boolean;
  opcode: number;
  authoritative: boolean;
  truncated: boolean;
  recursionDesired: boolean;
  recursionAvailable: boolean;
  rcode: number;
  questions: DnsQuestion[];
  answers: DnsRecord[];
  authorities: DnsRecord[];
  additionals: DnsRecord[];
}

/** A name read from a message and the offset just after it in the original sequence. */
interface NameRead {
  name: string;
  next: number;
}

/**
 * Reads a possibly compressed name at `offset` (RFC 1035 §4.1.4). Each pointer must point
 * before the pointer itself, which makes loops impossible; the 255-byte limit bounds the work.
 */
export function readDnsName(bytes: Uint8Array, offset: number): NameRead | DnsError {
  const labels: string[] = [];
  let position = offset;
  let next = -1;
  let encodedLength = 1;
  for (;;) {
    if (position >= bytes.length) return "dns-truncated";
    const length = bytes[position]!;
    if (length === 0) {
      if (next < 0) next = position + 1;
      return { name: labels.join("."), next };
    }
    const kind = length & 0xc0;
    if (kind === 0xc0) {
      if (position + 1 >= bytes.length) return "dns-truncated";
      const target = ((length & 0x3f) << 8) | bytes[position + 1]!;
      if (target >= position) return "dns-bad-pointer"; // forward or self pointer: a loop or garbage
      if (next < 0) next = position + 2;
      position = target;
      continue;
    }
    if (kind !== 0) return "dns-bad-label"; // 0x40/0x80: extended label types (RFC 6891 §5) not supported
    if (position + 1 + length > bytes.length) return "dns-truncated";
    encodedLength += length + 1;
    if (encodedLength > DNS_MAX_NAME_LENGTH) return "dns-name-too-long";
    labels.push(String.fromCharCode(...bytes.subarray(position + 1, position + 1 + length)));
    position += 1 + length;
  }
}

/** Encodes a dotted name as labels (no compression); a trailing dot is allowed. */
export function encodeDnsName(name: string): Uint8Array | DnsError {
  const trimmed = name.endsWith(".") ? name.slice(0, -1) : name;
  const labels = trimmed === "" ? [] : trimmed.split(".");
  const out: number[] = [];
  for (const label of labels) {
    if (label.length === 0 || label.length > 63) return "dns-bad-label";
    out.push(label.length);
    for (let i = 0; i < label.length; i++) {
      const code = label.charCodeAt(i);
      if (code > 0x7e || code < 0x21) return "dns-bad-label";
      out.push(code);
    }
  }
  out.push(0);
  if (out.length > DNS_MAX_NAME_LENGTH) return "dns-name-too-long";
  return new Uint8Array(out);
}

function readRecord(bytes: Uint8Array, offset: number, into: DnsRecord[]): number | DnsError {
  const name = readDnsName(bytes, offset);
  if (typeof name === "string") return name;
  let i = name.next;
  if (i + 10 > bytes.length) return "dns-truncated";
  const type = readUint16(bytes, i);
  const klass = readUint16(bytes, i + 2);
  const rawTtl = readUint32(bytes, i + 4);
  const dataLength = readUint16(bytes, i + 8);
  i += 10;
  if (i + dataLength > bytes.length) return "dns-truncated";
  const record: DnsRecord = { name: name.name, type, class: klass, ttl: rawTtl > 0x7fffffff ? 0 : rawTtl, data: bytes.slice(i, i + dataLength) };
  if (type === DNS_TYPE_A && klass === DNS_CLASS_IN) {
    if (dataLength !== 4) return "dns-bad-record";
    record.address = readUint32(bytes, i);
  } else if (type === DNS_TYPE_CNAME || type === DNS_TYPE_NS) {
    const target = readDnsName(bytes, i);
    if (typeof target === "string") return target;
    if (target.next > i + dataLength) return "dns-bad-record";
    record.target = target.name;
  }
  into.push(record);
  return i + dataLength;
}

/** Parses a whole message, or returns why it cannot. */
export function parseDns(bytes: Uint8Array): DnsMessage | DnsError {
  if (bytes.length < DNS_HEADER_LENGTH) return "dns-truncated";
  const flags = readUint16(bytes, 2);
  const message: DnsMessage = {
    id: readUint16(bytes, 0),
    response: (flags & 0x8000) !== 0,
    opcode: (flags >>> 11) & 0xf,
    authoritative: (flags & 0x0400) !== 0,
    truncated: (flags & 0x0200) !== 0,
    recursionDesired: (flags & 0x0100) !== 0,
    recursionAvailable: (flags & 0x0080) !== 0,
    rcode: flags & 0xf,
    questions: [],
    answers: [],
    authorities: [],
    additionals: [],
  };
  const questionCount = readUint16(bytes, 4);
  const counts = [readUint16(bytes, 6), readUint16(bytes, 8), readUint16(bytes, 10)];
  // Each question needs ≥ 5 bytes and each record ≥ 11: counts beyond that are lies.
  if (DNS_HEADER_LENGTH + questionCount * 5 + (counts[0]! + counts[1]! + counts[2]!) * 11 > bytes.length) return "dns-truncated";
  let offset = DNS_HEADER_LENGTH;
  for (let q = 0; q < questionCount; q++) {
    const name = readDnsName(bytes, offset);
    if (typeof name === "string") return name;
    if (name.next + 4 > bytes.length) return "dns-truncated";
    message.questions.push({ name: name.name, type: readUint16(bytes, name.next), class: readUint16(bytes, name.next + 2) });
    offset = name.next + 4;
  }
  const sections = [message.answers, message.authorities, message.additionals];
  for (let s = 0; s < 3; s++) {
    for (let r = 0; r < counts[s]!; r++) {
      const next = readRecord(bytes, offset, sections[s]!);
      if (typeof next === "string") return next;
      offset = next;
    }
  }
  return message;
}

/** Encodes a message without compression (queries, and responses in tests). */
export function emitDns(message: DnsMessage): Uint8Array | DnsError {
  const parts: Uint8Array[] = [];
  const header = new Uint8Array(DNS_HEADER_LENGTH);
  writeUint16(header, 0, message.id);
  writeUint16(header, 2, (message.response ? 0x8000 : 0) | ((message.opcode & 0xf) << 11) |
    (message.authoritative ? 0x0400 : 0) | (message.truncated ? 0x0200 : 0) |
    (message.recursionDesired ? 0x0100 : 0) | (message.recursionAvailable ? 0x0080 : 0) | (message.rcode & 0xf));
  writeUint16(header, 4, message.questions.length);
  writeUint16(header, 6, message.answers.length);
  writeUint16(header, 8, message.authorities.length);
  writeUint16(header, 10, message.additionals.length);
  parts.push(header);
  for (const question of message.questions) {
    const name = encodeDnsName(question.name);
    if (typeof name === "string") return name;
    const tail = new Uint8Array(4);
    writeUint16(tail, 0, question.type);
    writeUint16(tail, 2, question.class);
    parts.push(name, tail);
  }
  for (const record of [...message.answers, ...message.authorities, ...message.additionals]) {
    const name = encodeDnsName(record.name);
    if (typeof name === "string") return name;
    let data = record.data;
    if (record.address !== undefined) {
      data = new Uint8Array(4);
      writeUint32(data, 0, record.address);
    } else if (record.target !== undefined) {
      const target = encodeDnsName(record.target);
      if (typeof target === "string") return target;
      data = target;
    }
    const fixed = new Uint8Array(10);
    writeUint16(fixed, 0, record.type);
    writeUint16(fixed, 2, record.class);
    writeUint32(fixed, 4, record.ttl);
    writeUint16(fixed, 8, data.length);
    parts.push(name, fixed, data);
  }
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) { out.set(part, at); at += part.length; }
  return out;
}

/** Encodes a recursive query for one name and type. */
export function emitDnsQuery(id: number, name: string, type = DNS_TYPE_A): Uint8Array | DnsError {
  return emitDns({
    id, response: false, opcode: 0, authoritative: false, truncated: false, recursionDesired: true,
    recursionAvailable: false, rcode: 0, questions: [{ name, type, class: DNS_CLASS_IN }],
    answers: [], authorities: [], additionals: [],
  });
}
