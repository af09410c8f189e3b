/**
 * UDP sockets (RFC 768) over an IpSender: bind a port, send datagrams, and receive them
 * from a bounded queue. Datagrams that find no socket make input() return false, so the
 * IP layer can answer ICMP port unreachable; datagrams that find a full queue are dropped
 * and counted on the socket.
 */
import type { IpSender, TransportInput } from "../ip.ts";
import { PROTOCOL_UDP } from "../ip.ts";
import type { UdpError } from "../wire/udp.ts";
import { UDP_HEADER_LENGTH, UdpDatagram } from "../wire/udp.ts";
import { writeUint16 } from "../wire/ipv4.ts";

/** First port handed out by bind(0) (RFC 6335 §6 dynamic range). */
export const EPHEMERAL_PORT_FIRST = 49152;

/** A datagram taken from a socket's receive queue. */
export interface ReceivedDatagram {
  source: number;
  sourcePort: number;
  /** The address it was sent to (ours, or a broadcast address). */
  destination: number;
  /** The payload (owned by the receiver). */
  data: Uint8Array;
}

/** Receive-queue limits of one socket. */
export interface UdpSocketOptions {
  /** Datagrams queued at most (default 64). */
  queueLimit?: number;
  /** Payload bytes queued at most (default 256 KiB). */
  queueBytes?: number;
}

/** Why bind() refused. */
export class UdpBindError extends Error {
  constructor(readonly port: number, readonly reason: "in-use" | "bad-port" | "no-free-port") {
    super(`UDP bind ${port}: ${reason}`);
    this.name = "UdpBindError";
  }
}

/** Counters of the UDP layer. */
export interface UdpCounters {
  received: number;
  sent: number;
  sendFailed: number;
  noListener: number;
  queueFull: number;
  malformed: Record<UdpError, number>;
}

/** One bound UDP port. */
export class UdpSocket {
  /** Datagrams dropped because the queue was full. */
  dropped = 0;
  /** Called after a datagram is queued (e.g. to wake a task waiting in recv). */
  onReadable: (() => void) | null = null;
  private readonly queue: ReceivedDatagram[] = [];
  private queuedBytes = 0;
  private closed = false;
  private readonly queueLimit: number;
  private readonly queueBytesLimit: number;

  /** Created by UdpLayer.bind(). */
  constructor(private readonly layer: UdpLayer, readonly port: number, options: UdpSocketOptions = {}) {
    this.queueLimit = options.queueLimit ?? 64;
    this.queueBytesLimit = options.queueBytes ?? 256 * 1024;
  }

  /** Sends `data` to destination:port; false when the IP layer could not send or queue it. */
  sendTo(destination: number, port: number, data: Uint8Array): boolean {
    if (this.closed) return false;
    return this.layer.sendFrom(this.port, destination, port, data);
  }

  /** The oldest queued datagram, or undefined. */
  receive(): ReceivedDatagram | undefined {
    const datagram = this.queue.shift();
    if (datagram !== undefined) this.queuedBytes -= datagram.data.length;
    return datagram;
  }

  /** Datagrams waiting in the queue. */
  get pending(): number { return this.queue.length; }

  /** Releases the port; queued datagrams are discarded. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.layer.release(this);
  }

  /** Called by the layer: queues a copy of the payload, or counts a drop. */
  deliver(source: number, sourcePort: number, destination: number, payload: Uint8Array): boolean {
    if (this.queue.length >= this.queueLimit || this.queuedBytes + payload.length > this.queueBytesLimit) {
      this.dropped++;
      return false;
    }
    this.queue.push({ source, sourcePort, destination, data: payload.slice() });
    this.queuedBytes += payload.length;
    this.onReadable?.();
    return true;
  }
}

/** The UDP transport: register it on the interface for PROTOCOL_UDP. */
export class UdpLayer implements TransportInput {
  readonly counters: UdpCounters = {
    received: 0, sent: 0, sendFailed: 0, noListener: 0, queueFull: 0,
    malformed: { "udp-truncated": 0, "udp-bad-length": 0, "udp-bad-checksum": 0, "udp-zero-port": 0 },
  };
  private readonly sockets = new Map<number, UdpSocket>();
  private readonly view = new UdpDatagram();
  private nextEphemeral: number;
  /** bind(0) and the DNS resolver pick ports from [ephemeralFirst, ephemeralFirst + ephemeralCount)
   *  (disjoint per core on a multiqueue NIC). */
  readonly ephemeralFirst: number;
  readonly ephemeralCount: number;

  constructor(private readonly ip: IpSender, ephemeral: { first: number; count: number } = { first: EPHEMERAL_PORT_FIRST, count: 65536 - EPHEMERAL_PORT_FIRST }) {
    this.ephemeralFirst = ephemeral.first;
    this.ephemeralCount = ephemeral.count;
    this.nextEphemeral = ephemeral.first;
  }

  /** Binds `port` (0 picks a free ephemeral port); throws UdpBindError when it cannot. */
  bind(port = 0, options?: UdpSocketOptions): UdpSocket {
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UdpBindError(port, "bad-port");
    if (port === 0) port = this.freePort();
    else if (this.sockets.has(port)) throw new UdpBindError(port, "in-use");
    const socket = new UdpSocket(this, port, options);
    this.sockets.set(port, socket);
    return socket;
  }

  /** TransportInput: validates and queues a datagram; false when no socket listens on its port. */
  input(source: number, destination: number, segment: Uint8Array): boolean {
    const view = this.view.bind(segment, 0, segment.length);
    const error = view.check(source, destination);
    if (error !== null) { this.counters.malformed[error]++; return true; }
    this.counters.received++;
    const socket = this.sockets.get(view.destinationPort);
    if (socket === undefined) { this.counters.noListener++; return false; }
    if (!socket.deliver(source, view.sourcePort, destination, view.payload)) this.counters.queueFull++;
    return true;
  }

  /** Builds and sends one datagram (used by UdpSocket.sendTo). */
  sendFrom(sourcePort: number, destination: number, destinationPort: number, data: Uint8Array): boolean {
    const length = UDP_HEADER_LENGTH + data.length;
    const ok = this.ip.send(destination, PROTOCOL_UDP, length, (buffer, offset) => {
      const segment = buffer.subarray(offset, offset + length);
      writeUint16(segment, 0, sourcePort);
      writeUint16(segment, 2, destinationPort);
      writeUint16(segment, 4, length);
      segment.set(data, UDP_HEADER_LENGTH);
      this.view.bind(segment, 0, length).fillChecksum(this.ip.address, destination);
    });
    if (ok) this.counters.sent++;
    else this.counters.sendFailed++;
    return ok;
  }

  /** Forgets a closed socket. */
  release(socket: UdpSocket): void {
    if (this.sockets.get(socket.port) === socket) this.sockets.delete(socket.port);
  }

  private freePort(): number {
    for (let tries = 0; tries < this.ephemeralCount; tries++) {
      const port = this.nextEphemeral;
      this.nextEphemeral = port + 1 === this.ephemeralFirst + this.ephemeralCount ? this.ephemeralFirst : port + 1;
      if (!this.sockets.has(port)) return port;
    }
    throw new UdpBindError(0, "no-free-port");
  }
}
