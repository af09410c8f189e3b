/**
 * The seam between the IPv4 layer (kernel/net/iface) and the transport protocols
 * (kernel/net/socket): TCP and UDP see only this, and tests drive them through it.
 * Addresses are IPv4 addresses as unsigned 32-bit numbers (10.0.2.15 = 0x0a00020f).
 */
export interface IpSender {
  /** This interface's address, the source of every packet sent (0 before DHCP completes). */
  readonly address: number;
  /** Largest transport segment (header + payload) that fits one IP packet unfragmented. */
  readonly maxSegment: number;
  /**
   * Sends one IPv4 packet with `length` bytes of transport payload to `destination`.
   * `fill` writes the transport header and payload into buffer[offset, offset + length)
   * (inside the outgoing frame: zero copy, and no view made per packet); the IP layer writes
   * the IP header and the Ethernet header around it. Returns false when the packet could not be sent or
   * queued now (no transmit buffer, neighbour unresolved and its queue full): the caller
   * retries later (TCP's retransmission covers it).
   */
  send(destination: number, protocol: number, length: number, fill: (buffer: Uint8Array, offset: number) => void): boolean;
  /**
   * TCP segmentation offload (optional): the largest TCP segment, header included, that
   * sendSegmented() can send to `destination` now; 0 when the device cannot cut segments, or
   * while the next hop's link address is unknown (send() resolves it).
   */
  segmentedLimit?(destination: number): number;
  /**
   * Sends ONE TCP segment of `length` bytes (its `headerLength`-byte header included, at most
   * segmentedLimit()) for the device to cut into segments of `segmentSize` payload bytes. `fill`
   * writes the segment as for send(), with the checksum field holding the pseudo-header sum
   * over `length`, folded and not complemented. False when it could not be sent now.
   */
  sendSegmented?(destination: number, length: number, headerLength: number, segmentSize: number, fill: (buffer: Uint8Array, offset: number) => void): boolean;
}

/** A transport protocol's input: called by the IP layer with a validated, reassembled packet. */
export interface TransportInput {
  /**
   * `segment` is the IP payload; the view is valid only during the call. Returning false
   * means "no socket wanted it" (UDP with no listener): the IP layer may then answer with
   * ICMP destination unreachable (RFC 1122 §4.1.3.1). Returning nothing means handled.
   * `checksumVerified`: the device already verified the transport checksum (virtio-net
   * VIRTIO_NET_HDR_F_DATA_VALID or a checksum it completed); never set for fragments.
   */
  input(source: number, destination: number, segment: Uint8Array, now: number, checksumVerified?: boolean): void | boolean;
  /**
   * Optional: input() for a segment inside a larger buffer, packet[start, end). The IP layer
   * prefers it for unfragmented packets, so that no view is made per packet. Its packets
   * never draw ICMP port unreachable (a transport with it answers for itself, as TCP does).
   */
  inputAt?(source: number, destination: number, packet: Uint8Array, start: number, end: number, now: number, checksumVerified: boolean): void;
}

export const PROTOCOL_ICMP = 1;
export const PROTOCOL_TCP = 6;
export const PROTOCOL_UDP = 17;

/** "10.0.2.15" -> 0x0a00020f; throws on malformed input. */
export function parseIpv4(text: string): number {
  const parts = text.split(".");
  if (parts.length !== 4) throw new TypeError(`bad IPv4 address: ${text}`);
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) throw new TypeError(`bad IPv4 address: ${text}`);
    value = value * 256 + Number(part);
  }
  return value >>> 0;
}

/** 0x0a00020f -> "10.0.2.15". */
export function formatIpv4(address: number): string {
  return `${address >>> 24}.${(address >>> 16) & 255}.${(address >>> 8) & 255}.${address & 255}`;
}
