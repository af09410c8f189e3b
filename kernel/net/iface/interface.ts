/**
 * The IPv4 interface over one NetDevice (RFC 1122 §3): receives Ethernet frames and
 * dispatches ARP, ICMP and registered transports (TCP, UDP) by protocol number; sends
 * transport segments as IPv4 packets (IpSender), routing through the default gateway,
 * resolving neighbours, fragmenting what exceeds the MTU and reassembling what arrives
 * in fragments. Answers echo requests and, rate-limited, port/protocol unreachable.
 *
 * Driven smoltcp-style: poll(now) receives and runs timers, pollAt() names the next
 * deadline. Nothing throws out of the receive path: every rejected frame is counted in
 * `drops` under its reason.
 */
import type { NetDevice } from "../device.ts";
import type { IpSender, TransportInput } from "../ip.ts";
import { PROTOCOL_ICMP, PROTOCOL_TCP, PROTOCOL_UDP } from "../ip.ts";
import type { ArpError } from "../wire/arp.ts";
import { ARP_OPERATION_REPLY, ARP_OPERATION_REQUEST, ARP_PACKET_LENGTH, ArpPacket, emitArp } from "../wire/arp.ts";
import { sumWordsFrom } from "../wire/checksum.ts";
import type { EthernetError } from "../wire/ethernet.ts";
import {
  BROADCAST_MAC, ETHERNET_HEADER_LENGTH, ETHERTYPE_ARP, ETHERTYPE_IPV4, isMulticastMac, macEquals, writeEthernetHeader,
} from "../wire/ethernet.ts";
import type { IcmpError } from "../wire/icmp.ts";
import {
  ICMP_DESTINATION_UNREACHABLE, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_HEADER_LENGTH, ICMP_PORT_UNREACHABLE,
  ICMP_PROTOCOL_UNREACHABLE, IcmpPacket,
} from "../wire/icmp.ts";
import type { Ipv4Error } from "../wire/ipv4.ts";
import {
  IPV4_BROADCAST, IPV4_DONT_FRAGMENT, IPV4_HEADER_LENGTH, IPV4_MAX_DATAGRAM, IPV4_MORE_FRAGMENTS, Ipv4Packet,
  isMulticastIpv4, prefixToNetmask, writeIpv4Header, writeUint16,
} from "../wire/ipv4.ts";
import type { FragmentDropReason, ReassemblyOptions } from "./fragments.ts";
import { FragmentReassembler } from "./fragments.ts";
import type { NeighborCacheOptions } from "./neighbor.ts";
import { NeighborCache } from "./neighbor.ts";

/** Every reason the interface drops a frame or a packet; each has a counter in `drops`. */
export const DROP_REASONS = [
  "ethernet-truncated", "ethernet-other-destination", "ethernet-unknown-type",
  "arp-truncated", "arp-unsupported", "arp-bad-operation", "arp-not-for-us", "arp-bad-sender", "arp-address-conflict",
  "ipv4-truncated", "ipv4-bad-version", "ipv4-bad-header-length", "ipv4-bad-total-length", "ipv4-bad-checksum",
  "ipv4-not-for-us", "ipv4-bad-source", "ipv4-unknown-protocol", "transport-error",
  "fragment-bad-length", "fragment-too-large", "fragment-overlap", "fragment-duplicate", "fragment-inconsistent",
  "fragment-no-room", "fragment-timeout",
  "icmp-truncated", "icmp-bad-checksum", "icmp-echo-not-unicast", "icmp-rate-limited",
  "send-no-route", "send-too-large", "send-loopback-full", "send-no-transmit-buffer", "send-neighbor-queue-full", "send-neighbor-unresolved",
] as const;

/** A reason counted in Ipv4Interface.drops. */
export type DropReason = (typeof DROP_REASONS)[number];
// Compile-time proof that every wire error has a counter.
const everyWireErrorCounted: readonly DropReason[] = [] as (EthernetError | ArpError | Ipv4Error | IcmpError | FragmentDropReason)[];
void everyWireErrorCounted;

/** Static IPv4 configuration of an interface. */
export interface Ipv4Config {
  address: number;
  prefixLength: number;
  /** The default gateway, 0 for none (only on-link destinations are reachable). */
  gateway: number;
}

/** Tunables of an Ipv4Interface. */
export interface InterfaceOptions {
  neighbor?: NeighborCacheOptions;
  reassembly?: ReassemblyOptions;
  /** TTL of packets sent (default 64). */
  ttl?: number;
  /** ICMP errors sent per second on average (default 10) and in a burst (default 10). */
  icmpErrorRate?: number;
  icmpErrorBurst?: number;
  /** Gratuitous ARP announcements after an address is assigned (default 2, 2 s apart: RFC 5227 §2.3). */
  announcements?: number;
}

/** Traffic counters of an Ipv4Interface (drops are separate, by reason). */
export interface InterfaceCounters {
  framesReceived: number;
  framesSent: number;
  packetsDelivered: number;
  packetsSent: number;
  fragmentsSent: number;
  echoRepliesSent: number;
  unreachablesSent: number;
  arpRequestsSent: number;
  arpRepliesSent: number;
}

const ANNOUNCE_INTERVAL = 2000;
/** Looped-back packets waiting for the next poll. */
const LOOPBACK_QUEUE_LIMIT = 64;
const ZERO_MAC = new Uint8Array(6);

/** One IPv4 interface: the IP layer of the stack. */
export class Ipv4Interface implements IpSender {
  /** Our address (0 while unconfigured: then every destination is accepted, for DHCP). */
  address = 0;
  prefixLength = 0;
  netmask = 0;
  gateway = 0;
  /** The directed broadcast address of our subnet. */
  subnetBroadcast = IPV4_BROADCAST;
  readonly mac: Uint8Array;
  private readonly macHigh: number;
  private readonly macLow: number;
  readonly counters: InterfaceCounters = {
    framesReceived: 0, framesSent: 0, packetsDelivered: 0, packetsSent: 0, fragmentsSent: 0,
    echoRepliesSent: 0, unreachablesSent: 0, arpRequestsSent: 0, arpRepliesSent: 0,
  };
  /** Drops by reason. */
  readonly drops: Record<DropReason, number>;
  readonly neighbors: NeighborCache;
  /** The last exception a transport threw while handling input (counted as "transport-error"). */
  lastTransportError: unknown = null;
  readonly fragments: FragmentReassembler;

  private now = 0;
  private readonly transports: (TransportInput | undefined)[] = new Array(256);
  private readonly ttl: number;
  private nextIdentification = 1;
  private readonly ipView = new Ipv4Packet();
  /** A separate view for the transmit path, which may run while ipView is in use by a receive. */
  private readonly transmitView = new Ipv4Packet();
  private readonly arpView = new ArpPacket();
  private readonly icmpView = new IcmpPacket();
  private readonly icmpErrorRate: number;
  private readonly icmpErrorBurst: number;
  private icmpTokens: number;
  private icmpTokensAt = 0;
  private readonly announcementCount: number;
  private announcementsLeft = 0;
  private nextAnnouncementAt = Infinity;
  private readonly loopback: Uint8Array[] = [];
  /**
   * The last unicast destination sent to and its next hop's MAC, so that send() skips route()
   * and the neighbour lookup for it: valid while now < sendMacUntil (the entry's expiry when
   * looked up) and the neighbour cache's generation is still sendGeneration (it moves when
   * an entry is removed or updated); configure() forgets it. sendTemplate holds the frame's
   * Ethernet and IPv4 headers for it (copied with one `set`; length, identification,
   * protocol and checksum written per packet), sendTemplateSum the header checksum's
   * constant part. The template is built at the destination's second packet in a row, so
   * that clients whose packets interleave (every packet a miss) pay nothing for it.
   */
  private sendDestination = -1;
  private sendMac: Uint8Array = BROADCAST_MAC;
  private sendMacUntil = 0;
  private sendGeneration = 0;
  private readonly sendTemplate = new Uint8Array(ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH);
  private sendTemplateSum = 0;
  private sendTemplateReady = false;

  constructor(private readonly device: NetDevice, options: InterfaceOptions = {}) {
    this.mac = device.mac.slice(0, 6);
    this.macHigh = (this.mac[0]! << 8) | this.mac[1]!;
    this.macLow = ((this.mac[2]! << 24) | (this.mac[3]! << 16) | (this.mac[4]! << 8) | this.mac[5]!) >>> 0;
    this.ttl = options.ttl ?? 64;
    this.icmpErrorRate = options.icmpErrorRate ?? 10;
    this.icmpErrorBurst = options.icmpErrorBurst ?? 10;
    this.icmpTokens = this.icmpErrorBurst;
    this.announcementCount = options.announcements ?? 2;
    const drops = {} as Record<DropReason, number>;
    for (const reason of DROP_REASONS) drops[reason] = 0;
    this.drops = drops;
    this.neighbors = new NeighborCache(
      (address) => this.sendArp(ARP_OPERATION_REQUEST, BROADCAST_MAC, ZERO_MAC, address),
      (mac, packet) => this.transmitPacket(mac, packet),
      options.neighbor,
    );
    this.fragments = new FragmentReassembler((reason, count) => { this.drops[reason] += count; }, options.reassembly);
    device.setReceiveHandler(this.receiveFrame.bind(this)); // bound, not an arrow: no interpreter frame of its own
  }

  /** Largest transport segment sent unfragmented. */
  get maxSegment(): number { return this.device.mtu - IPV4_HEADER_LENGTH; }

  /** The sum of all drop counters. */
  get totalDrops(): number {
    let total = 0;
    for (const reason of DROP_REASONS) total += this.drops[reason];
    return total;
  }

  /**
   * Assigns an address (static or from a DHCP lease), or removes it with null. A new
   * address clears the neighbour cache and is announced with gratuitous ARP (RFC 5227 §2.3).
   */
  configure(config: Ipv4Config | null, now = this.now): void {
    this.now = now;
    this.sendDestination = -1; // routes change
    const previous = this.address;
    if (config === null) {
      this.address = 0;
      this.prefixLength = 0;
      this.netmask = 0;
      this.gateway = 0;
      this.subnetBroadcast = IPV4_BROADCAST;
      this.announcementsLeft = 0;
      this.nextAnnouncementAt = Infinity;
      this.neighbors.clear();
      return;
    }
    this.address = config.address >>> 0;
    this.prefixLength = config.prefixLength;
    this.netmask = prefixToNetmask(config.prefixLength);
    this.gateway = config.gateway >>> 0;
    this.subnetBroadcast = (this.address | ~this.netmask) >>> 0;
    if (previous !== this.address) {
      this.neighbors.clear();
      this.announcementsLeft = this.announcementCount;
      this.nextAnnouncementAt = now;
      this.announce(now);
      // Resolve the gateway now rather than when the first burst of replies needs it.
      if (this.gateway !== 0) this.neighbors.resolve(this.gateway, now);
    }
  }

  /** Routes packets of `protocol` (PROTOCOL_TCP, PROTOCOL_UDP, or PROTOCOL_ICMP for messages the interface does not answer itself) to `input`. */
  register(protocol: number, input: TransportInput | null): void {
    this.transports[protocol & 255] = input ?? undefined;
  }

  /** Receives pending frames, then runs ARP retries, reassembly timeouts and announcements. Returns frames received. */
  poll(now: number): number {
    this.now = now;
    return this.device.poll() + this.pollLocal(now);
  }

  /**
   * poll() without asking the device for frames, for a device that delivers them on its own
   * (a virtio driver polls itself): looped-back packets, ARP retries, reassembly timeouts and
   * announcements. Returns looped-back frames received.
   */
  pollLocal(now: number): number {
    this.now = now;
    let received = 0;
    if (this.loopback.length > 0) {
      const frames = this.loopback.splice(0, this.loopback.length);
      for (const frame of frames) this.receiveFrame(frame, false);
      received = frames.length;
    }
    // Their deadlines read here: nothing is due in most passes, and a call that returns at once still costs one.
    const neighbors = this.neighbors, fragments = this.fragments;
    if (now >= neighbors.nextDueAt) neighbors.poll(now);
    if (now >= fragments.nextDeadline) fragments.poll(now);
    if (this.nextAnnouncementAt <= now) this.announce(now);
    return received;
  }

  /** Advances the clock input is stamped with, for a pass that skips pollLocal() (frames a device delivers on its own between polls use it). */
  setClock(now: number): void {
    this.now = now;
  }

  /** The next time poll() has work (Infinity when none; now when looped-back packets wait); frames arriving also need a poll. */
  pollAt(): number {
    if (this.loopback.length > 0) return this.now;
    // Compared by hand: Math.min is a native call. The deadlines read as fields (see pollLocal).
    let next = this.neighbors.nextDueAt;
    const fragments = this.fragments.nextDeadline;
    if (fragments < next) next = fragments;
    return this.nextAnnouncementAt < next ? this.nextAnnouncementAt : next;
  }

  // ───────────────────────────── send path ─────────────────────────────

  /** IpSender.segmentedLimit: see kernel/net/ip.ts. */
  segmentedLimit(destination: number): number {
    const large = this.device.largeSend ?? 0;
    if (!(large > 0) || this.device.transmitSegmented === undefined || this.segmentationMac(destination >>> 0) === null) return 0;
    const limit = large - ETHERNET_HEADER_LENGTH - IPV4_HEADER_LENGTH;
    return limit < IPV4_MAX_DATAGRAM - IPV4_HEADER_LENGTH ? limit : IPV4_MAX_DATAGRAM - IPV4_HEADER_LENGTH;
  }

  /** The next hop's link address for a large segment to `destination` if it is known now
   *  (remembered, or in the neighbour cache: then remembered), else null. */
  private segmentationMac(destination: number): Uint8Array | null {
    const neighbors = this.neighbors;
    if (destination === this.sendDestination && this.now < this.sendMacUntil && this.sendGeneration === neighbors.generation) return this.sendMac;
    if (destination === this.address) return null;
    const nextHop = this.route(destination);
    if (nextHop < 0 || nextHop === IPV4_BROADCAST) return null;
    const mac = neighbors.lookup(nextHop, this.now);
    if (mac !== null) this.remember(destination, mac, neighbors.expiresAt(nextHop), neighbors.generation);
    return mac;
  }

  /** IpSender.sendSegmented: see kernel/net/ip.ts (TCP only; never fragmented, DF set). */
  sendSegmented(destination: number, length: number, headerLength: number, segmentSize: number, fill: (buffer: Uint8Array, offset: number) => void): boolean {
    destination >>>= 0;
    const device = this.device;
    if (!(ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH + length <= (device.largeSend ?? 0)) || length > IPV4_MAX_DATAGRAM - IPV4_HEADER_LENGTH || device.transmitSegmented === undefined) {
      this.drops["send-too-large"]++;
      return false;
    }
    const mac = this.segmentationMac(destination);
    if (mac === null) { this.drops["send-neighbor-unresolved"]++; return false; } // (segmentedLimit() said it was known)
    const frameLength = ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH + length;
    const frame = device.txBuffer(frameLength);
    if (frame === null) { this.drops["send-no-transmit-buffer"]++; return false; }
    // The device gives each segment the next identification (RFC 6864: with DF set it only has
    // to differ between datagrams in flight): skip as many as it will use.
    const identification = this.nextIdentification;
    this.nextIdentification = (identification + Math.ceil((length - headerLength) / segmentSize)) & 0xffff;
    writeEthernetHeader(frame, 0, mac, this.mac, ETHERTYPE_IPV4);
    writeIpv4Header(frame, ETHERNET_HEADER_LENGTH, this.address, destination, PROTOCOL_TCP, length, identification, this.ttl, IPV4_DONT_FRAGMENT);
    fill(frame, ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH);
    device.transmitSegmented(frame, frameLength, ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH + headerLength, segmentSize);
    this.counters.framesSent++;
    this.counters.packetsSent++;
    return true;
  }

  /** IpSender.send: see kernel/net/ip.ts. Fragments when `length` exceeds maxSegment. */
  send(destination: number, protocol: number, length: number, fill: (buffer: Uint8Array, offset: number) => void): boolean {
    destination >>>= 0;
    if (length > IPV4_MAX_DATAGRAM - IPV4_HEADER_LENGTH) { this.drops["send-too-large"]++; return false; }
    const neighbors = this.neighbors;
    let nextHop = destination;
    let mac: Uint8Array | null;
    let remembered = true;
    if (destination === this.sendDestination && this.now < this.sendMacUntil && this.sendGeneration === neighbors.generation) {
      mac = this.sendMac; // (never our own address: configure() forgets it)
      if (!this.sendTemplateReady) this.buildSendTemplate();
    } else {
      remembered = false;
      if (destination === this.address && destination !== 0) return this.sendToSelf(protocol, length, fill);
      nextHop = this.route(destination);
      if (nextHop < 0) { this.drops["send-no-route"]++; return false; }
      if (nextHop === IPV4_BROADCAST) {
        mac = BROADCAST_MAC;
      } else {
        mac = neighbors.lookup(nextHop, this.now);
        if (mac !== null) this.remember(destination, mac, neighbors.expiresAt(nextHop), neighbors.generation);
      }
    }
    const identification = this.nextIdentification;
    this.nextIdentification = (identification + 1) & 0xffff;
    if (IPV4_HEADER_LENGTH + length <= this.device.mtu) {
      if (mac !== null) {
        // Hot path: headers and segment written straight into the device's buffer.
        const device = this.device;
        const frameLength = ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH + length;
        const frame = device.txBuffer(frameLength);
        if (frame === null) { this.drops["send-no-transmit-buffer"]++; return false; }
        if (remembered) {
          // The remembered destination's headers, then what varies per packet: a copy costs
          // less than writing the 34 bytes one by one. The checksum as in writeIpv4Header.
          frame.set(this.sendTemplate);
          const totalLength = IPV4_HEADER_LENGTH + length;
          let sum = this.sendTemplateSum + totalLength + identification + protocol;
          sum = (sum & 0xffff) + (sum >>> 16);
          sum = ~((sum & 0xffff) + (sum >>> 16));
          frame[16] = totalLength >> 8; frame[17] = totalLength;
          frame[18] = identification >> 8; frame[19] = identification;
          frame[23] = protocol; frame[24] = sum >> 8; frame[25] = sum;
        } else {
          writeEthernetHeader(frame, 0, mac, this.mac, ETHERTYPE_IPV4);
          writeIpv4Header(frame, ETHERNET_HEADER_LENGTH, this.address, destination, protocol, length, identification, this.ttl, IPV4_DONT_FRAGMENT);
        }
        fill(frame, ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH);
        device.transmit(frame, frameLength);
        this.counters.framesSent++;
        this.counters.packetsSent++;
        return true;
      }
      const packet = new Uint8Array(IPV4_HEADER_LENGTH + length);
      writeIpv4Header(packet, 0, this.address, destination, protocol, length, identification, this.ttl, IPV4_DONT_FRAGMENT);
      fill(packet, IPV4_HEADER_LENGTH);
      if (this.neighbors.enqueue(nextHop, packet, this.now) !== "queued") { this.drops["send-neighbor-queue-full"]++; return false; }
      this.counters.packetsSent++;
      return true;
    }
    // Too big for one frame: build the whole datagram once; transmitPacket() fragments it,
    // now or when the neighbour resolves (one queue slot per datagram, not per fragment).
    const packet = new Uint8Array(IPV4_HEADER_LENGTH + length);
    writeIpv4Header(packet, 0, this.address, destination, protocol, length, identification, this.ttl, 0);
    fill(packet, IPV4_HEADER_LENGTH);
    if (mac !== null) {
      if (!this.transmitPacket(mac, packet)) return false;
    } else if (this.neighbors.enqueue(nextHop, packet, this.now) !== "queued") {
      this.drops["send-neighbor-queue-full"]++;
      return false;
    }
    this.counters.packetsSent++;
    return true;
  }

  /** Remembers `destination`'s MAC for send(); its header template is built at the next packet. */
  private remember(destination: number, mac: Uint8Array, until: number, generation: number): void {
    this.sendDestination = destination;
    this.sendMac = mac;
    this.sendMacUntil = until;
    this.sendGeneration = generation;
    this.sendTemplateReady = false;
  }

  /** Builds the remembered destination's Ethernet + IPv4 header template. */
  private buildSendTemplate(): void {
    const source = this.address, ttl = this.ttl, destination = this.sendDestination, mac = this.sendMac;
    const template = this.sendTemplate;
    writeEthernetHeader(template, 0, mac, this.mac, ETHERTYPE_IPV4);
    writeIpv4Header(template, ETHERNET_HEADER_LENGTH, source, destination, 0, 0, 0, ttl, IPV4_DONT_FRAGMENT);
    // Version/IHL and TOS, DF, TTL and the addresses (RFC 1071 §2: summed from the values).
    this.sendTemplateSum = 0x4500 + IPV4_DONT_FRAGMENT + (ttl << 8) +
      (source >>> 16) + (source & 0xffff) + (destination >>> 16) + (destination & 0xffff);
    this.sendTemplateReady = true;
  }

  /**
   * Packets to our own address are looped back: queued as frames and received at the next
   * poll(), never synchronously (a transport must not re-enter itself from send()).
   */
  private sendToSelf(protocol: number, length: number, fill: (buffer: Uint8Array, offset: number) => void): boolean {
    if (this.loopback.length >= LOOPBACK_QUEUE_LIMIT) { this.drops["send-loopback-full"]++; return false; }
    const frame = new Uint8Array(ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH + length);
    writeEthernetHeader(frame, 0, this.mac, this.mac, ETHERTYPE_IPV4);
    const identification = this.nextIdentification;
    this.nextIdentification = (identification + 1) & 0xffff;
    writeIpv4Header(frame, ETHERNET_HEADER_LENGTH, this.address, this.address, protocol, length, identification, this.ttl, IPV4_DONT_FRAGMENT);
    fill(frame, ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH);
    this.loopback.push(frame);
    this.counters.packetsSent++;
    return true;
  }

  /** Sends an ICMP echo request (the data is copied). */
  ping(destination: number, identifier: number, sequence: number, data: Uint8Array = new Uint8Array(0)): boolean {
    const length = ICMP_HEADER_LENGTH + data.length;
    return this.send(destination, PROTOCOL_ICMP, length, (buffer, offset) => {
      const segment = buffer.subarray(offset, offset + length);
      const view = this.icmpView.bind(segment, 0, segment.length);
      view.type = ICMP_ECHO_REQUEST;
      view.code = 0;
      view.identifier = identifier;
      view.sequence = sequence;
      segment.set(data, ICMP_HEADER_LENGTH);
      view.fillChecksum();
    });
  }

  /**
   * The next hop for `destination`: itself when on-link, the gateway otherwise, the
   * broadcast address for broadcasts, -1 when unreachable.
   */
  private route(destination: number): number {
    if (destination === IPV4_BROADCAST || (this.address !== 0 && destination === this.subnetBroadcast)) return IPV4_BROADCAST;
    if ((destination >>> 28) === 0xe || destination === 0 || this.address === 0) return -1; // (multicast: isMulticastIpv4, written out)
    if (((destination ^ this.address) & this.netmask) === 0) return destination;
    return this.gateway !== 0 ? this.gateway : -1;
  }

  /**
   * Wraps a whole IPv4 packet (20-byte header, as written by send()) in Ethernet and
   * transmits it, copying (the slow path); fragments it first when it exceeds the MTU
   * (RFC 791 §3.2: every fragment but the last carries a multiple of 8 bytes).
   */
  private transmitPacket(mac: Uint8Array, packet: Uint8Array): boolean {
    if (packet.length <= this.device.mtu) return this.transmitFrame(mac, packet);
    const ip = this.transmitView.bind(packet, 0);
    const source = ip.source;
    const destination = ip.destination;
    const protocol = ip.protocol;
    const identification = ip.identification;
    const length = packet.length - IPV4_HEADER_LENGTH;
    const chunk = this.maxSegment & ~7;
    for (let offset = 0; offset < length; offset += chunk) {
      const size = Math.min(chunk, length - offset);
      const flags = (offset + size < length ? IPV4_MORE_FRAGMENTS : 0) | (offset >>> 3);
      const frameLength = ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH + size;
      const frame = this.device.txBuffer(frameLength);
      if (frame === null) { this.drops["send-no-transmit-buffer"]++; return false; }
      writeEthernetHeader(frame, 0, mac, this.mac, ETHERTYPE_IPV4);
      writeIpv4Header(frame, ETHERNET_HEADER_LENGTH, source, destination, protocol, size, identification, this.ttl, flags);
      frame.set(packet.subarray(IPV4_HEADER_LENGTH + offset, IPV4_HEADER_LENGTH + offset + size), ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH);
      this.device.transmit(frame, frameLength);
      this.counters.framesSent++;
      this.counters.fragmentsSent++;
    }
    return true;
  }

  private transmitFrame(mac: Uint8Array, packet: Uint8Array): boolean {
    const frameLength = ETHERNET_HEADER_LENGTH + packet.length;
    const frame = this.device.txBuffer(frameLength);
    if (frame === null) { this.drops["send-no-transmit-buffer"]++; return false; }
    writeEthernetHeader(frame, 0, mac, this.mac, ETHERTYPE_IPV4);
    frame.set(packet, ETHERNET_HEADER_LENGTH);
    this.device.transmit(frame, frameLength);
    this.counters.framesSent++;
    return true;
  }

  private sendArp(operation: number, destinationMac: Uint8Array, targetMac: Uint8Array, targetAddress: number): void {
    const frameLength = ETHERNET_HEADER_LENGTH + ARP_PACKET_LENGTH;
    const frame = this.device.txBuffer(frameLength);
    if (frame === null) { this.drops["send-no-transmit-buffer"]++; return; }
    writeEthernetHeader(frame, 0, destinationMac, this.mac, ETHERTYPE_ARP);
    emitArp({ operation, senderHardware: this.mac, senderProtocol: this.address, targetHardware: targetMac, targetProtocol: targetAddress },
      this.arpView.bind(frame, ETHERNET_HEADER_LENGTH));
    this.device.transmit(frame, frameLength);
    this.counters.framesSent++;
    if (operation === ARP_OPERATION_REQUEST) this.counters.arpRequestsSent++;
    else this.counters.arpRepliesSent++;
  }

  /** Gratuitous ARP: a request for our own address (RFC 5227 §2.3 announcement). */
  private announce(now: number): void {
    if (this.address === 0 || this.announcementsLeft <= 0) { this.nextAnnouncementAt = Infinity; return; }
    this.sendArp(ARP_OPERATION_REQUEST, BROADCAST_MAC, ZERO_MAC, this.address);
    this.announcementsLeft--;
    this.nextAnnouncementAt = this.announcementsLeft > 0 ? now + ANNOUNCE_INTERVAL : Infinity;
  }

  // ───────────────────────────── receive path ─────────────────────────────

  /** One received frame; `checksumVerified`: the device verified its TCP/UDP checksum. */
  private receiveFrame(frame: Uint8Array, checksumVerified?: boolean): void {
    this.counters.framesReceived++;
    const frameLength = frame.length; // (a typed array's length is a getter call: read once)
    if (frameLength < ETHERNET_HEADER_LENGTH) { this.drops["ethernet-truncated"]++; return; }
    // Only frames for our MAC or broadcast; group addresses we never joined are dropped.
    // Compared as two integers: byte loops cost ~0.1 µs per access under QuickJS.
    const high = (frame[0]! << 8) | frame[1]!;
    const low = ((frame[2]! << 24) | (frame[3]! << 16) | (frame[4]! << 8) | frame[5]!) >>> 0;
    if (!(high === this.macHigh && low === this.macLow) && !(high === 0xffff && low === 0xffffffff)) {
      this.drops["ethernet-other-destination"]++;
      return;
    }
    const etherType = (frame[12]! << 8) | frame[13]!;
    if (etherType === ETHERTYPE_IPV4) this.receiveIpv4(frame, frameLength, checksumVerified === true);
    else if (etherType === ETHERTYPE_ARP) this.receiveArp(frame);
    else this.drops["ethernet-unknown-type"]++;
  }

  /** RFC 826 packet reception, with RFC 5227 conflict detection for our own address. */
  private receiveArp(frame: Uint8Array): void {
    const arp = this.arpView.bind(frame, ETHERNET_HEADER_LENGTH);
    const error = arp.check();
    if (error !== null) { this.drops[error]++; return; }
    const sender = arp.senderProtocol;
    const senderMac = arp.senderHardware;
    if (isMulticastMac(senderMac) || sender === IPV4_BROADCAST || isMulticastIpv4(sender)) { this.drops["arp-bad-sender"]++; return; }
    if (this.address === 0) { this.drops["arp-not-for-us"]++; return; }
    if (sender === this.address) {
      if (!macEquals(senderMac, 0, this.mac)) this.drops["arp-address-conflict"]++;
      return;
    }
    const target = arp.targetProtocol;
    const forUs = target === this.address;
    const merged = sender !== 0 && this.neighbors.update(sender, senderMac, this.now, forUs);
    if (forUs && arp.operation === ARP_OPERATION_REQUEST) {
      this.sendArp(ARP_OPERATION_REPLY, senderMac.slice(), senderMac.slice(), sender);
    } else if (!forUs && !merged) {
      this.drops["arp-not-for-us"]++;
    }
  }

  /**
   * The receive hot path. Fields are read with plain index arithmetic rather than through
   * the Ipv4Packet view (getter calls cost ~0.2 µs each under QuickJS); the view is bound
   * only for the rare paths (fragments, ICMP errors). Checks are those of Ipv4Packet.check().
   */
  private receiveIpv4(frame: Uint8Array, frameLength: number, checksumVerified: boolean): void {
    const start = ETHERNET_HEADER_LENGTH;
    const available = frameLength - start;
    if (available < IPV4_HEADER_LENGTH) { this.drops["ipv4-truncated"]++; return; }
    const versionAndLength = frame[start]!;
    if (versionAndLength >>> 4 !== 4) { this.drops["ipv4-bad-version"]++; return; }
    const headerLength = (versionAndLength & 0x0f) << 2;
    if (headerLength < IPV4_HEADER_LENGTH) { this.drops["ipv4-bad-header-length"]++; return; }
    const totalLength = (frame[start + 2]! << 8) | frame[start + 3]!;
    if (totalLength < headerLength || totalLength > available) { this.drops["ipv4-bad-total-length"]++; return; }
    // The header's sum through the native summer (in the guest; one call costs less than the
    // ten words' 20 element reads in the interpreter).
    let sum = sumWordsFrom(frame, start, start + headerLength, 0);
    sum = (sum & 0xffff) + (sum >>> 16);
    if (((sum & 0xffff) + (sum >>> 16)) !== 0xffff) { this.drops["ipv4-bad-checksum"]++; return; }
    const destination = ((frame[start + 16]! << 24) | (frame[start + 17]! << 16) | (frame[start + 18]! << 8) | frame[start + 19]!) >>> 0;
    if (this.address !== 0 && destination !== this.address && destination !== IPV4_BROADCAST && destination !== this.subnetBroadcast) {
      this.drops["ipv4-not-for-us"]++;
      return;
    }
    const source = ((frame[start + 12]! << 24) | (frame[start + 13]! << 16) | (frame[start + 14]! << 8) | frame[start + 15]!) >>> 0;
    // RFC 1122 §3.2.1.3: a source that is broadcast or multicast (isMulticastIpv4, written out) is never a host.
    if (source === IPV4_BROADCAST || (source >>> 28) === 0xe || (source === this.subnetBroadcast && this.address !== 0)) {
      this.drops["ipv4-bad-source"]++;
      return;
    }
    const protocol = frame[start + 9]!;
    const handler = this.transports[protocol];
    let segment: Uint8Array;
    if (((frame[start + 6]! & 0x3f) | frame[start + 7]!) !== 0) {
      const whole = this.fragments.add(this.ipView.bind(frame, start), this.now);
      if (whole === null) return;
      segment = whole;
      checksumVerified = false; // a device verifies single packets, not reassembled ones
    } else if (handler !== undefined && handler.inputAt !== undefined && protocol !== PROTOCOL_ICMP) {
      // TCP's segments are handed over in place (no view made per packet).
      this.counters.packetsDelivered++;
      try {
        handler.inputAt(source, destination, frame, start + headerLength, start + totalLength, this.now, checksumVerified);
      } catch (error) {
        this.drops["transport-error"]++;
        this.lastTransportError = error;
      }
      return;
    } else {
      segment = frame.subarray(start + headerLength, start + totalLength);
    }
    if (protocol === PROTOCOL_ICMP) {
      this.receiveIcmp(source, destination, segment, handler);
      return;
    }
    if (handler === undefined) {
      this.drops["ipv4-unknown-protocol"]++;
      this.ipView.bind(frame, start);
      this.sendUnreachable(ICMP_PROTOCOL_UNREACHABLE, source, destination, segment);
      return;
    }
    this.counters.packetsDelivered++;
    let accepted: void | boolean;
    try {
      accepted = handler.input(source, destination, segment, this.now, checksumVerified);
    } catch (error) {
      // A bug in one transport (or in a callback it runs) must not stop the receive loop.
      this.drops["transport-error"]++;
      this.lastTransportError = error;
      return;
    }
    if (accepted === false && protocol === PROTOCOL_UDP) {
      this.ipView.bind(frame, start);
      this.sendUnreachable(ICMP_PORT_UNREACHABLE, source, destination, segment);
    }
  }

  private receiveIcmp(source: number, destination: number, segment: Uint8Array, handler: TransportInput | undefined): void {
    const icmp = this.icmpView.bind(segment, 0, segment.length);
    const error = icmp.check();
    if (error !== null) { this.drops[error]++; return; }
    this.counters.packetsDelivered++;
    if (icmp.type === ICMP_ECHO_REQUEST) {
      // RFC 1122 §3.2.2.6: echo requests to broadcast addresses may be silently discarded.
      if (destination !== this.address) { this.drops["icmp-echo-not-unicast"]++; return; }
      const sent = this.send(source, PROTOCOL_ICMP, segment.length, (buffer, offset) => {
        const reply = buffer.subarray(offset, offset + segment.length);
        reply.set(segment);
        reply[0] = ICMP_ECHO_REPLY;
        // Incremental checksum update (RFC 1624): the type byte went from 8 to 0.
        const sum = (((reply[2]! << 8) | reply[3]!) + (ICMP_ECHO_REQUEST << 8)) ;
        writeUint16(reply, 2, (sum & 0xffff) + (sum >>> 16));
      });
      if (sent) this.counters.echoRepliesSent++;
      return;
    }
    try {
      handler?.input(source, destination, segment, this.now);
    } catch (error) {
      this.drops["transport-error"]++;
      this.lastTransportError = error;
    }
  }

  /**
   * ICMP destination unreachable about the packet ipView is bound to, quoting the offending
   * header and 8 bytes of its payload (RFC 792), never about broadcasts, fragments after the
   * first, or to a non-unicast source (RFC 1122 §3.2.2), and token-bucket rate-limited
   * (RFC 1812 §4.3.2.8).
   */
  private sendUnreachable(code: number, source: number, destination: number, segment: Uint8Array): void {
    const ip = this.ipView;
    if (destination !== this.address || source === 0 || ip.fragmentOffset !== 0) return;
    const elapsed = this.now - this.icmpTokensAt;
    this.icmpTokensAt = this.now;
    this.icmpTokens = Math.min(this.icmpErrorBurst, this.icmpTokens + (elapsed * this.icmpErrorRate) / 1000);
    if (this.icmpTokens < 1) { this.drops["icmp-rate-limited"]++; return; }
    this.icmpTokens -= 1;
    const headerLength = ip.headerLength;
    const quoted = Math.min(8, segment.length);
    const header = ip.bytes.subarray(ip.offset, ip.offset + headerLength);
    const length = ICMP_HEADER_LENGTH + headerLength + quoted;
    const sent = this.send(source, PROTOCOL_ICMP, length, (buffer, offset) => {
      const message = buffer.subarray(offset, offset + length);
      message.fill(0, 0, ICMP_HEADER_LENGTH);
      message[0] = ICMP_DESTINATION_UNREACHABLE;
      message[1] = code;
      message.set(header, ICMP_HEADER_LENGTH);
      message.set(segment.subarray(0, quoted), ICMP_HEADER_LENGTH + headerLength);
      this.icmpView.bind(message, 0, message.length).fillChecksum();
    });
    if (sent) this.counters.unreachablesSent++;
  }
}
