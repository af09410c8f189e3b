/**
 * The DHCP client (RFC 2131 §4.4): INIT → SELECTING (DISCOVER) → REQUESTING (REQUEST) →
 * BOUND, then RENEWING at T1 (unicast to the server) and REBINDING at T2 (broadcast), and
 * back to INIT when the lease expires or a NAK arrives. Retransmissions back off
 * exponentially from 4 s to 64 s with ±1 s of jitter (§4.1). Driven by poll(now)/pollAt().
 *
 * Deliberate shortcuts, for boot time: the first DISCOVER goes out at once (§4.4.1 suggests
 * a 1–10 s random delay) and the offered address is not probed with ARP (§2.2 SHOULD).
 */
import { formatIpv4 } from "./ip.ts";
import type { UdpLayer, UdpSocket } from "./socket/udp.ts";
import type { DhcpRepr } from "./wire/dhcp.ts";
import {
  DHCP_ACK, DHCP_CLIENT_PORT, DHCP_DISCOVER, DHCP_NAK, DHCP_OFFER, DHCP_OP_REPLY, DHCP_OP_REQUEST, DHCP_REQUEST,
  DHCP_SERVER_PORT, DhcpOption, dhcpLength, emitDhcp, parseDhcp,
} from "./wire/dhcp.ts";
import { IPV4_BROADCAST } from "./wire/ipv4.ts";

/** What a server granted. Times are absolute, in the poll clock's milliseconds. */
export interface DhcpLease {
  address: number;
  prefixLength: number;
  /** The first router (option 3), 0 when none. */
  gateway: number;
  dnsServers: number[];
  /** The server identifier (option 54). */
  server: number;
  /** Seconds granted; Infinity for an infinite lease. */
  leaseSeconds: number;
  renewAt: number;
  rebindAt: number;
  expiresAt: number;
}

/** States of RFC 2131 figure 5 (INIT-REBOOT and REBOOTING are not used). */
export type DhcpState = "stopped" | "init" | "selecting" | "requesting" | "bound" | "renewing" | "rebinding";

/** Callbacks and tunables of the client. */
export interface DhcpClientOptions {
  /** Called on every ACK: configure the interface with the lease. */
  onLease(lease: DhcpLease): void;
  /** Called when the lease expired or was refused: remove the address. */
  onLeaseLost(): void;
  /** Uniform random numbers in [0, 1) for the transaction id and jitter (default: a PRNG seeded from the MAC). */
  random?: () => number;
  /** First retransmission timeout in ms (default 4000, RFC 2131 §4.1). */
  initialTimeout?: number;
  /** Largest retransmission timeout in ms (default 64000). */
  maxTimeout?: number;
  /** REQUESTs sent in REQUESTING before starting over (default 4). */
  maxRequests?: number;
  hostName?: string;
}

/** Counters of the client. */
export interface DhcpCounters {
  sent: number;
  offers: number;
  acks: number;
  naks: number;
  /** Replies ignored: malformed, another client's, or unexpected in this state. */
  ignored: number;
}

const PARAMETERS = [DhcpOption.SubnetMask, DhcpOption.Router, DhcpOption.DnsServer, DhcpOption.LeaseTime,
  DhcpOption.RenewalTime, DhcpOption.RebindingTime];
/** RFC 2131 §4.4.5: retransmissions in RENEWING/REBINDING are at least 60 s apart. */
const MIN_RENEW_RETRANSMIT = 60_000;

/** A DHCP client for one interface. */
export class DhcpClient {
  state: DhcpState = "stopped";
  lease: DhcpLease | null = null;
  readonly counters: DhcpCounters = { sent: 0, offers: 0, acks: 0, naks: 0, ignored: 0 };
  private socket: UdpSocket | null = null;
  private readonly random: () => number;
  private readonly initialTimeout: number;
  private readonly maxTimeout: number;
  private readonly maxRequests: number;
  private transactionId = 0;
  private startedAt = 0;
  private attempts = 0;
  private deadline = Infinity;
  private offeredAddress = 0;
  private offeringServer = 0;

  constructor(private readonly udp: UdpLayer, private readonly mac: Uint8Array, private readonly options: DhcpClientOptions) {
    this.random = options.random ?? seededRandom(mac);
    this.initialTimeout = options.initialTimeout ?? 4000;
    this.maxTimeout = options.maxTimeout ?? 64_000;
    this.maxRequests = options.maxRequests ?? 4;
  }

  /** Binds port 68 and sends the first DISCOVER. */
  start(now: number): void {
    if (this.socket === null) this.socket = this.udp.bind(DHCP_CLIENT_PORT, { queueLimit: 8 });
    this.restart(now);
  }

  /** Releases port 68 and stops (the address, if any, stays configured). */
  stop(): void {
    this.socket?.close();
    this.socket = null;
    this.state = "stopped";
    this.deadline = Infinity;
  }

  /** Handles replies, then retransmissions and lease timers. */
  poll(now: number): void {
    if (this.socket === null) return;
    for (let datagram = this.socket.receive(); datagram !== undefined; datagram = this.socket.receive()) {
      if (datagram.sourcePort !== DHCP_SERVER_PORT) { this.counters.ignored++; continue; }
      this.receive(datagram.data, now);
    }
    if (now >= this.deadline) this.timeout(now);
  }

  /** The next retransmission or lease deadline (Infinity when stopped). */
  pollAt(): number {
    return this.deadline;
  }

  private restart(now: number): void {
    this.state = "selecting";
    this.transactionId = Math.floor(this.random() * 0x100000000) >>> 0;
    this.startedAt = now;
    this.attempts = 0;
    this.sendDiscover(now);
  }

  private receive(bytes: Uint8Array, now: number): void {
    const reply = parseDhcp(bytes);
    if (typeof reply === "string" || reply.op !== DHCP_OP_REPLY || reply.transactionId !== this.transactionId ||
        !sameMac(reply.clientHardware, this.mac)) {
      this.counters.ignored++;
      return;
    }
    if (reply.messageType === DHCP_OFFER && this.state === "selecting") {
      if (reply.yourAddress === 0 || reply.serverIdentifier === undefined) { this.counters.ignored++; return; }
      this.counters.offers++;
      this.offeredAddress = reply.yourAddress;
      this.offeringServer = reply.serverIdentifier;
      this.state = "requesting";
      this.attempts = 0;
      this.sendRequest(now);
      return;
    }
    const waitingForAck = this.state === "requesting" || this.state === "renewing" || this.state === "rebinding";
    if (reply.messageType === DHCP_ACK && waitingForAck) {
      const lease = this.leaseFrom(reply, now);
      if (lease === null) { this.counters.ignored++; return; }
      this.counters.acks++;
      this.lease = lease;
      this.state = "bound";
      this.deadline = lease.renewAt;
      this.options.onLease(lease);
      return;
    }
    if (reply.messageType === DHCP_NAK && waitingForAck) {
      // RFC 2131 §3.1.5 / §4.4.5: a NAK means the address is gone; start over.
      this.counters.naks++;
      this.loseLease();
      this.restart(now);
      return;
    }
    this.counters.ignored++;
  }

  private timeout(now: number): void {
    switch (this.state) {
      case "selecting":
        this.attempts++;
        this.sendDiscover(now);
        return;
      case "requesting":
        this.attempts++;
        if (this.attempts >= this.maxRequests) this.restart(now);
        else this.sendRequest(now);
        return;
      case "bound":
        this.state = "renewing";
        this.transactionId = Math.floor(this.random() * 0x100000000) >>> 0;
        this.sendRequest(now);
        return;
      case "renewing":
        if (now >= this.lease!.rebindAt) this.state = "rebinding";
        this.sendRequest(now);
        return;
      case "rebinding":
        if (now >= this.lease!.expiresAt) {
          this.loseLease();
          this.restart(now);
          return;
        }
        this.sendRequest(now);
        return;
      default:
        this.deadline = Infinity;
    }
  }

  private loseLease(): void {
    if (this.lease !== null) {
      this.lease = null;
      this.options.onLeaseLost();
    }
  }

  /** Exponential backoff 4, 8, 16, 32, 64 s, each ±1 s (RFC 2131 §4.1). */
  private backoff(): number {
    const base = Math.min(this.initialTimeout * 2 ** Math.min(this.attempts, 16), this.maxTimeout);
    return Math.max(0, base + (this.random() * 2 - 1) * Math.min(1000, base / 4));
  }

  private baseMessage(now: number, messageType: number): DhcpRepr {
    return {
      op: DHCP_OP_REQUEST, transactionId: this.transactionId,
      secondsElapsed: Math.min(0xffff, Math.floor((now - this.startedAt) / 1000)),
      broadcast: true, clientAddress: 0, yourAddress: 0, serverAddress: 0, relayAddress: 0,
      clientHardware: this.mac, messageType,
      clientIdentifier: new Uint8Array([1, ...this.mac.subarray(0, 6)]),
      parameterRequestList: PARAMETERS, maxMessageSize: 1500,
      ...(this.options.hostName !== undefined ? { hostName: this.options.hostName } : {}),
    };
  }

  private sendDiscover(now: number): void {
    this.transmit(this.baseMessage(now, DHCP_DISCOVER), IPV4_BROADCAST);
    this.deadline = now + this.backoff();
  }

  /** REQUEST as §4.3.2 prescribes for each state: SELECTING carries server id and requested address; RENEWING/REBINDING carry ciaddr. */
  private sendRequest(now: number): void {
    const message = this.baseMessage(now, DHCP_REQUEST);
    if (this.state === "requesting") {
      message.requestedAddress = this.offeredAddress;
      message.serverIdentifier = this.offeringServer;
      this.transmit(message, IPV4_BROADCAST);
      this.deadline = now + this.backoff();
      return;
    }
    const lease = this.lease!;
    message.clientAddress = lease.address;
    message.broadcast = false;
    if (this.state === "renewing") {
      this.transmit(message, lease.server);
      this.deadline = Math.min(lease.rebindAt, now + Math.max((lease.rebindAt - now) / 2, MIN_RENEW_RETRANSMIT));
    } else {
      this.transmit(message, IPV4_BROADCAST);
      this.deadline = Math.min(lease.expiresAt, now + Math.max((lease.expiresAt - now) / 2, MIN_RENEW_RETRANSMIT));
    }
  }

  private transmit(message: DhcpRepr, destination: number): void {
    const bytes = new Uint8Array(dhcpLength(message));
    emitDhcp(message, bytes);
    if (this.socket?.sendTo(destination, DHCP_SERVER_PORT, bytes)) this.counters.sent++;
  }

  /** Builds a lease from an ACK; null when it lacks what a lease needs. */
  private leaseFrom(ack: DhcpRepr, now: number): DhcpLease | null {
    const address = ack.yourAddress !== 0 ? ack.yourAddress : this.lease?.address ?? 0;
    if (address === 0) return null;
    const seconds = ack.leaseTime === undefined || ack.leaseTime === 0xffffffff ? Infinity : ack.leaseTime;
    // RFC 2131 §4.4.5 defaults: T1 = 0.5 × lease, T2 = 0.875 × lease; keep T1 ≤ T2 ≤ lease.
    let t2 = ack.rebindingTime !== undefined && ack.rebindingTime < seconds ? ack.rebindingTime : seconds * 0.875;
    let t1 = ack.renewalTime !== undefined && ack.renewalTime < t2 ? ack.renewalTime : seconds * 0.5;
    if (t1 > t2) t1 = t2;
    if (t2 > seconds) t2 = seconds;
    return {
      address,
      prefixLength: ack.subnetMask !== undefined ? maskToPrefix(ack.subnetMask) : classfulPrefix(address),
      gateway: ack.routers?.[0] ?? 0,
      dnsServers: ack.dnsServers ?? [],
      server: ack.serverIdentifier ?? this.offeringServer,
      leaseSeconds: seconds,
      renewAt: now + t1 * 1000,
      rebindAt: now + t2 * 1000,
      expiresAt: now + seconds * 1000,
    };
  }
}

/** "10.0.2.15/24 via 10.0.2.2, dns 10.0.2.3, 86400 s" — for the boot log. */
export function describeLease(lease: DhcpLease): string {
  const gateway = lease.gateway !== 0 ? ` via ${formatIpv4(lease.gateway)}` : "";
  const dns = lease.dnsServers.length > 0 ? `, dns ${lease.dnsServers.map(formatIpv4).join(" ")}` : "";
  return `${formatIpv4(lease.address)}/${lease.prefixLength}${gateway}${dns}, ${lease.leaseSeconds} s`;
}

function sameMac(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 6; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** 255.255.255.0 -> 24 (counts leading ones; a non-contiguous mask counts up to its first zero). */
function maskToPrefix(mask: number): number {
  let prefix = 0;
  while (prefix < 32 && (mask & (0x80000000 >>> prefix)) !== 0) prefix++;
  return prefix;
}

/** The pre-CIDR default (RFC 1122 §3.3.1.1 leaves it to the host when option 1 is absent). */
function classfulPrefix(address: number): number {
  const first = address >>> 24;
  return first < 128 ? 8 : first < 192 ? 16 : 24;
}

/** xorshift32 seeded from the MAC: distinct clients on one link pick distinct xids. */
function seededRandom(mac: Uint8Array): () => number {
  let state = ((mac[2]! << 24) | (mac[3]! << 16) | (mac[4]! << 8) | mac[5]!) ^ 0x9e3779b9 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 4294967296;
  };
}
