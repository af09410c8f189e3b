/**
 * TCP tunables, their defaults, the drop/reset counters, and the error type the app sees.
 */
import { type CongestionControllerFactory, NewRenoController } from "./tcp-congestion.ts";

/** Tunables of one TCP stack; every field but `isnSecret` has a default (see DEFAULT_TCP_CONFIG). */
export interface TcpConfig {
  /** Random secret (≥ 8 bytes) for RFC 6528 ISNs and timestamp offsets; injected by the glue. */
  isnSecret: Uint8Array;
  /** Receive buffer per connection (bytes); bounds the advertised window. */
  receiveBufferSize: number;
  /** Send buffer per connection (bytes); write() waits when it is full. */
  sendBufferSize: number;
  /** Byte limit of the out-of-order queue per connection. */
  outOfOrderLimit: number;
  /** RFC 6298 §2.1 initial RTO (ms). */
  initialRetransmitTimeout: number;
  /** Lower bound of the RTO (ms); RFC 6298 §2.4 says 1 s, Linux uses 200 ms. */
  minRetransmitTimeout: number;
  /** Upper bound of the RTO (ms); RFC 6298 §2.5 allows ≥ 60 s. */
  maxRetransmitTimeout: number;
  /** Retransmissions of data/FIN before the connection fails with ETIMEDOUT. */
  maxRetransmissions: number;
  /** Retransmissions of SYN / SYN-ACK before giving up. */
  maxSynRetransmissions: number;
  /** Delayed-ACK timeout (ms); RFC 9293 §3.8.6.3 requires < 0.5 s, RFC 1122 ≤ 200 ms. */
  delayedAckTimeout: number;
  /** TIME-WAIT duration, 2·MSL (ms). A unikernel reuses few ports, so the default is 30 s. */
  timeWaitDuration: number;
  /** How long an orphaned (close()d) connection may sit in FIN-WAIT-2 (ms). */
  finWait2Timeout: number;
  /** Half-open connections (SYN-RECEIVED) per listener; the oldest is evicted beyond it. */
  synQueueLimit: number;
  /** RFC 5961 §7 challenge ACKs allowed per second, stack-wide. */
  challengeAckLimit: number;
  /** Keep-alive defaults (RFC 9293 §3.8.4: off unless asked, idle ≥ 2 h by default). */
  keepAliveIdle: number;
  keepAliveInterval: number;
  keepAliveProbes: number;
  /** Offer RFC 7323 timestamps and window scaling. */
  timestamps: boolean;
  windowScaling: boolean;
  /** Congestion controller per connection. */
  congestionControl: CongestionControllerFactory;
  /** Local ports connect() picks from: [ephemeralFirst, ephemeralFirst + ephemeralCount).
   *  Cores sharing one address (a multiqueue NIC) get disjoint slices of 49152..65535. */
  ephemeralFirst: number;
  ephemeralCount: number;
}

/** Defaults for everything but the secret. */
export const DEFAULT_TCP_CONFIG: Omit<TcpConfig, "isnSecret"> = {
  ephemeralFirst: 49152,
  ephemeralCount: 16384,
  receiveBufferSize: 65536,
  sendBufferSize: 65536,
  outOfOrderLimit: 65536,
  initialRetransmitTimeout: 1000,
  minRetransmitTimeout: 200,
  maxRetransmitTimeout: 60000,
  maxRetransmissions: 12,
  maxSynRetransmissions: 5,
  delayedAckTimeout: 40,
  timeWaitDuration: 30000,
  finWait2Timeout: 60000,
  synQueueLimit: 128,
  challengeAckLimit: 100,
  keepAliveIdle: 7200000,
  keepAliveInterval: 75000,
  keepAliveProbes: 9,
  timestamps: true,
  windowScaling: true,
  congestionControl: (maxSegment) => new NewRenoController(maxSegment),
};

/** Counted events (drops and resets) — the fuzz test and diagnostics read them. */
export interface TcpCounters {
  segmentsReceived: number;
  segmentsSent: number;
  retransmissions: number;
  fastRetransmits: number;
  timeouts: number;
  droppedMalformed: number;
  droppedChecksum: number;
  droppedNoConnection: number;
  droppedOutOfWindow: number;
  droppedPaws: number;
  droppedOutOfOrderFull: number;
  droppedSendFailed: number;
  droppedListenOverflow: number;
  synQueueEvictions: number;
  challengeAcks: number;
  challengeAcksSuppressed: number;
  resetsSent: number;
  resetsReceived: number;
}

/** A zeroed counter record. */
export function createTcpCounters(): TcpCounters {
  return {
    segmentsReceived: 0, segmentsSent: 0, retransmissions: 0, fastRetransmits: 0, timeouts: 0,
    droppedMalformed: 0, droppedChecksum: 0, droppedNoConnection: 0, droppedOutOfWindow: 0,
    droppedPaws: 0, droppedOutOfOrderFull: 0, droppedSendFailed: 0, droppedListenOverflow: 0,
    synQueueEvictions: 0, challengeAcks: 0, challengeAcksSuppressed: 0, resetsSent: 0, resetsReceived: 0,
  };
}

/** Error codes a TCP connection can fail with (POSIX names, as Node uses them). */
export type TcpErrorCode = "ECONNRESET" | "ECONNREFUSED" | "ETIMEDOUT" | "ECONNABORTED" | "EADDRINUSE" | "EPIPE" | "EADDRNOTAVAIL";

/** An error with a POSIX `code`, like Node's system errors. */
export class TcpError extends Error {
  constructor(readonly code: TcpErrorCode, message: string) {
    super(`${code}: ${message}`);
    this.name = "TcpError";
  }
}
