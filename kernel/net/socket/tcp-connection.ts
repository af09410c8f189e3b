/**
 * One TCP connection: the RFC 9293 state machine (§3.3.2, event processing §3.10), with
 * RFC 5961 RST/SYN/ACK validation, RFC 7323 window scaling, timestamps and PAWS, RFC 6298
 * retransmission timing, RFC 5681/6582 fast retransmit and NewReno recovery (through a
 * pluggable CongestionController), delayed ACKs, Nagle, keep-alive and zero-window probing.
 *
 * No timers: the owning TcpStack calls `input()` for each segment and `poll(now)` when
 * `deadline` has passed; everything the connection sends goes out through IpSender.
 */
import { PROTOCOL_TCP } from "../ip.ts";
import { sumWordsFrom } from "../wire/checksum.ts";
import {
  TCP_ACK, TCP_FIN, TCP_HEADER_LENGTH, TCP_PSH, TCP_RST, TCP_SYN, type TcpHeaderFields, type TcpOptions,
  tcpHeaderLengthFor, writeTcpHeader,
} from "../wire/tcp.ts";
import { ByteRing, OutOfOrderQueue } from "./tcp-buffers.ts";
import type { TcpConfig, TcpCounters } from "./tcp-config.ts";
import { TcpError } from "./tcp-config.ts";
import type { CongestionController } from "./tcp-congestion.ts";
// Sequence arithmetic modulo 2^32 (tcp-seq.ts) is written out inline in this file — a < b is
// ((a - b) | 0) < 0, a + n is ((a + n) >>> 0), a − b is ((a - b) | 0) — because a function call
// per comparison is a large share of a segment's cost in the interpreter.
import type { IpSender } from "../ip.ts";

/**
 * RFC 9293 §3.3.2 connection states (LISTEN lives in TcpStack's listeners). Numbers, not
 * strings: a state test runs several times per segment, and the interpreter compares two
 * small integers inline but two strings through a call. `tcpStateName()` gives the RFC's name.
 */
export enum TcpState {
  Closed,
  SynSent,
  SynReceived,
  Established,
  FinWait1,
  FinWait2,
  CloseWait,
  Closing,
  LastAck,
  TimeWait,
}

const STATE_NAMES = ["CLOSED", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT"] as const;

/** The RFC 9293 name of a state ("ESTABLISHED", "TIME-WAIT", …), for diagnostics. */
export function tcpStateName(state: TcpState): string {
  return STATE_NAMES[state] ?? `state ${state}`;
}

/** What the stack provides to its connections. */
export interface TcpConnectionHost {
  readonly config: TcpConfig;
  readonly ip: IpSender;
  readonly counters: TcpCounters;
  /** RFC 5961 §7: true when one more challenge ACK fits this second's budget. */
  allowChallengeAck(now: number): boolean;
  /** Schedules output for this connection at the next poll. */
  markDirty(connection: TcpConnection): void;
  /** A passive connection completed its handshake; false when the accept queue is full. */
  completeHandshake(connection: TcpConnection): boolean;
  /** The connection reached CLOSED: forget it. */
  release(connection: TcpConnection): void;
  /**
   * A timer changed outside input(), poll() and output() (which the stack watches itself),
   * e.g. by an app call; app calls that queue output go through markDirty() instead.
   */
  timersChanged(connection?: TcpConnection): void;
}

/** Callbacks the app-facing layer installs; called from inside input()/poll(). */
export interface TcpConnectionEvents {
  onEstablished(): void;
  /** Data or EOF can be read. */
  onReadable(): void;
  /** Send-buffer space became free. */
  onWritable(): void;
  /** The connection reached CLOSED; `error` is null after an orderly close. */
  onClosed(error: TcpError | null): void;
}

const MAX_WINDOW_SHIFT = 14;

/** A TCP connection (transmission control block, RFC 9293 §3.3.1). */
export class TcpConnection {
  state = TcpState.Closed;
  events: TcpConnectionEvents | null = null;
  /** Set when the connection failed (reset, timeout, refused). */
  error: TcpError | null = null;
  /** True for connections created by a listener (passive open). */
  readonly passive: boolean;

  // Send sequence space (RFC 9293 §3.3.1).
  initialSendSequence = 0;
  sendUnacknowledged = 0;
  sendNext = 0;
  /** Highest sequence sent so far (sendNext goes back to sendUnacknowledged on timeout). */
  sendMax = 0;
  /** Peer's window in bytes (already scaled). */
  sendWindow = 0;
  private sendWindowUpdateSequence = 0;
  private sendWindowUpdateAck = 0;
  /** Largest window the peer ever offered (RFC 5961 §5.2 MAX.SND.WND; sender SWS). */
  maxSendWindow = 0;
  /** Payload bytes per segment we send (peer MSS, minus our fixed options). */
  maxSegment = 536;
  /** Sequence number of the first byte in the send buffer. */
  private sendBufferSequence = 0;
  private sendBuffer: ByteRing | null = null;
  /** close()/end() was called: a FIN follows the buffered data. */
  private finQueued = false;

  // Receive sequence space.
  initialReceiveSequence = 0;
  receiveNext = 0;
  /** Right edge of the window we last advertised (RCV.NXT + RCV.WND). */
  private receiveWindowEdge = 0;
  private receiveBuffer: ByteRing | null = null;
  private readonly outOfOrder: OutOfOrderQueue;
  /** Sequence of a FIN that arrived beyond a hole (-1: none). */
  private pendingFinSequence = -1;
  /** The peer's FIN was received in order: reads end with EOF after the buffered data. */
  finReceived = false;
  /** close() (not end()): received data is discarded, the connection is orphaned. */
  private discardReceived = false;

  // Options (RFC 7323, RFC 9293 §3.7.1).
  /** Our window shift (what we offered); 0 when scaling was not agreed. */
  receiveWindowShift = 0;
  /** Peer's window shift. */
  sendWindowShift = 0;
  timestampsEnabled = false;
  private timestampRecent = 0;
  private timestampOffset = 0;
  private lastAckSent = 0;
  private peerMaxSegment = 536;
  /** The peer offered SACK (RFC 2018); recorded for diagnostics, SACK itself is not used. */
  peerSackPermitted = false;
  /** Both SYNs carried the window-scale option (RFC 7323 §2.2). */
  private windowScalingAgreed = false;

  // Retransmission (RFC 6298).
  retransmitTimeout: number;
  smoothedRoundTrip = -1;
  roundTripVariance = 0;
  private retransmitDeadline = Infinity;
  private retransmitCount = 0;
  /** Karn: timed segment (no timestamps) — sequence it ends at and its send time. */
  private timedSequence = 0;
  private timedAt = -1;

  // Loss recovery (RFC 5681 §3.2, RFC 6582).
  readonly congestion: CongestionController;
  private duplicateAcks = 0;
  private inRecovery = false;
  private recoverSequence = 0;

  // ACK generation.
  private ackNow = false;
  private delayedAckDeadline = Infinity;
  private bytesSinceAck = 0;

  // Persist (zero window) and keep-alive.
  private persistDeadline = Infinity;
  private persistBackoff = 0;
  keepAliveEnabled = false;
  keepAliveIdle: number;
  keepAliveInterval: number;
  keepAliveProbes: number;
  private keepAliveDeadline = Infinity;
  private keepAliveProbesSent = 0;
  /** Nagle's algorithm off (RFC 9293 §3.7.4). */
  noDelay = false;

  /**
   * A read waiting for data (set and cleared by TcpSocket.readIntoWith's owner): in-order bytes
   * that arrive while nothing is buffered are copied from the segment straight to
   * readTarget[readTargetOffset…] — one copy instead of two, into the receive buffer and out
   * of it — and readTargetCount says how many; onReadable() then takes them (takeDirect()).
   */
  readTarget: Uint8Array | null = null;
  readTargetOffset = 0;
  readTargetCount = 0;

  /** The stack queued this connection for output (TcpStack.markDirty); output() clears it. */
  outputQueued = false;

  // TIME-WAIT / FIN-WAIT-2 / misc.
  private closeDeadline = Infinity;
  /** Sequence of our FIN once it is queued (valid when finQueued). */
  private finSequence = 0;

  // One header record and one fill callback per connection: no per-segment allocation.
  private readonly header: TcpHeaderFields;
  private fillSource: ByteRing | null = null;
  private fillDataOffset = 0;
  private fillDataLength = 0;
  private readonly fill: (buffer: Uint8Array, offset: number) => void;
  /** The checksum's pseudo-header sum without the length (addresses and protocol, RFC 9293 §3.1). */
  private readonly pseudoHeaderSum: number;
  /**
   * The bytes every 32-byte header of this connection shares (ports, data offset 8 words, zero
   * checksum and urgent pointer, NOP NOP and the timestamps option's kind and length): the
   * segment filler copies them with one `set` and stores only the fields that change.
   */
  private readonly timestampHeader: Uint8Array;
  /** The same for 20-byte headers (no options): ports, data offset 5 words, zero checksum and urgent pointer. */
  private readonly plainHeader: Uint8Array;

  constructor(
    private readonly host: TcpConnectionHost,
    readonly localAddress: number,
    readonly localPort: number,
    readonly remoteAddress: number,
    readonly remotePort: number,
    passive: boolean,
  ) {
    this.passive = passive;
    const config = host.config;
    this.retransmitTimeout = config.initialRetransmitTimeout;
    this.outOfOrder = new OutOfOrderQueue(config.outOfOrderLimit);
    this.keepAliveIdle = config.keepAliveIdle;
    this.keepAliveInterval = config.keepAliveInterval;
    this.keepAliveProbes = config.keepAliveProbes;
    this.header = {
      sourcePort: localPort, destinationPort: remotePort, sequence: 0, acknowledgment: 0, flags: 0, window: 0,
      maxSegmentSize: -1, windowScale: -1, sackPermitted: false, hasTimestamps: false, timestampValue: 0, timestampEcho: 0,
    };
    this.fill = this.fillSegment.bind(this); // bound, not an arrow: no interpreter frame of its own
    this.pseudoHeaderSum = (localAddress >>> 16) + (localAddress & 0xffff) + (remoteAddress >>> 16) + (remoteAddress & 0xffff) + PROTOCOL_TCP;
    const template = new Uint8Array(TCP_HEADER_LENGTH + 12);
    template[0] = localPort >> 8; template[1] = localPort; template[2] = remotePort >> 8; template[3] = remotePort;
    template[12] = 0x80; // data offset 8 words
    template[20] = 1; template[21] = 1; template[22] = 8; template[23] = 10; // NOP NOP, kind 8 length 10
    this.timestampHeader = template;
    const plain = new Uint8Array(TCP_HEADER_LENGTH);
    plain[0] = localPort >> 8; plain[1] = localPort; plain[2] = remotePort >> 8; plain[3] = remotePort;
    plain[12] = 0x50; // data offset 5 words
    this.plainHeader = plain;
    this.congestion = config.congestionControl(this.localMaxSegment());
    if (config.windowScaling) {
      let shift = 0;
      while (shift < MAX_WINDOW_SHIFT && config.receiveBufferSize >> shift > 0xffff) shift++;
      this.receiveWindowShift = shift;
    }
  }

  /** Earliest time this connection needs poll() (Infinity: none). */
  get deadline(): number {
    // Compared by hand: Math.min is a native call, and the stack reads this after every segment.
    let deadline = this.retransmitDeadline;
    const delayedAck = this.delayedAckDeadline, persist = this.persistDeadline, keepAlive = this.keepAliveDeadline, close = this.closeDeadline;
    if (delayedAck < deadline) deadline = delayedAck;
    if (persist < deadline) deadline = persist;
    if (keepAlive < deadline) deadline = keepAlive;
    return close < deadline ? close : deadline;
  }

  /** Bytes that can be read now. */
  get readableLength(): number { return this.receiveBuffer === null ? 0 : this.receiveBuffer.length; }
  /** Free space in the send buffer. */
  get writableLength(): number {
    if (!this.canSend) return 0;
    return this.sendBuffer === null ? this.host.config.sendBufferSize : this.sendBuffer.free;
  }
  /** Bytes written but not yet acknowledged. */
  get unacknowledgedLength(): number { return this.sendBuffer === null ? 0 : this.sendBuffer.length; }
  /** True while the app may still write. */
  get canSend(): boolean {
    return !this.finQueued && (this.state === TcpState.Established || this.state === TcpState.CloseWait ||
      this.state === TcpState.SynSent || this.state === TcpState.SynReceived);
  }
  /** True when the peer's FIN has been read past: read() would return EOF. */
  get atEndOfStream(): boolean {
    return (this.finReceived || this.state === TcpState.Closed) && this.readableLength === 0;
  }

  // ─── Opening ──────────────────────────────────────────────────────────────────────────

  /** Active open (RFC 9293 §3.10.1): sends the SYN at the next poll. */
  openActive(initialSequence: number, timestampOffset: number, now: number): void {
    this.initialSendSequence = initialSequence;
    this.sendUnacknowledged = initialSequence;
    this.sendNext = initialSequence;
    this.sendMax = initialSequence;
    this.sendBufferSequence = ((initialSequence + 1) >>> 0);
    this.recoverSequence = initialSequence;
    this.timestampOffset = timestampOffset;
    this.windowScalingAgreed = this.host.config.windowScaling; // tentatively: the SYN offers it
    this.timestampsEnabled = this.host.config.timestamps; // tentatively: the SYN offers them
    this.state = TcpState.SynSent;
    this.allocateBuffers();
    this.output(now);
  }

  /** Passive open from a listener's SYN (RFC 9293 §3.10.7.2): answers with SYN-ACK. */
  openPassive(initialSequence: number, timestampOffset: number, synSequence: number, window: number, options: TcpOptions, now: number): void {
    this.initialSendSequence = initialSequence;
    this.sendUnacknowledged = initialSequence;
    this.sendNext = initialSequence;
    this.sendMax = initialSequence;
    this.sendBufferSequence = ((initialSequence + 1) >>> 0);
    this.recoverSequence = initialSequence;
    this.timestampOffset = timestampOffset;
    this.initialReceiveSequence = synSequence;
    this.receiveNext = ((synSequence + 1) >>> 0);
    this.receiveWindowEdge = this.receiveNext;
    this.negotiateOptions(options);
    this.sendWindow = window; // RFC 7323 §2.2: the window in a SYN is never scaled
    this.sendWindowUpdateSequence = synSequence;
    this.maxSendWindow = window;
    if (this.timestampsEnabled) this.timestampRecent = options.timestampValue;
    this.state = TcpState.SynReceived;
    this.output(now);
  }

  private negotiateOptions(options: TcpOptions): void {
    const config = this.host.config;
    this.peerMaxSegment = options.maxSegmentSize > 0 ? options.maxSegmentSize : 536; // RFC 9293 §3.7.1
    this.windowScalingAgreed = config.windowScaling && options.windowScale >= 0;
    if (this.windowScalingAgreed) {
      this.sendWindowShift = options.windowScale;
    } else {
      this.sendWindowShift = 0;
      this.receiveWindowShift = 0;
    }
    this.timestampsEnabled = config.timestamps && options.hasTimestamps;
    this.peerSackPermitted = options.sackPermitted;
    const optionBytes = this.timestampsEnabled ? 12 : 0;
    this.maxSegment = Math.max(64, Math.min(this.peerMaxSegment, this.localMaxSegment()) - optionBytes);
  }

  private localMaxSegment(): number {
    return Math.max(64, this.host.ip.maxSegment - 20);
  }

  private allocateBuffers(): void {
    if (this.sendBuffer === null) this.sendBuffer = new ByteRing(this.host.config.sendBufferSize);
    if (this.receiveBuffer === null) this.receiveBuffer = new ByteRing(this.host.config.receiveBufferSize);
  }

  // ─── App calls ────────────────────────────────────────────────────────────────────────

  /** Queues bytes for sending; returns how many fit in the send buffer (0 when full or closed). */
  write(data: Uint8Array, offset = 0, length = data.length - offset): number {
    // canSend and allocateBuffers(), written out: the app's writes come through here
    if (this.finQueued || !(this.state === TcpState.Established || this.state === TcpState.CloseWait ||
        this.state === TcpState.SynSent || this.state === TcpState.SynReceived)) {
      return 0;
    }
    if (this.sendBuffer === null) this.allocateBuffers();
    const n = this.sendBuffer!.write(data, offset, length);
    if (n > 0) this.host.markDirty(this);
    return n;
  }

  /** write() of all of `data` or, when it does not fit the send buffer now, of none: whether it was written. */
  writeAll(data: Uint8Array): boolean {
    if (this.finQueued || !(this.state === TcpState.Established || this.state === TcpState.CloseWait ||
        this.state === TcpState.SynSent || this.state === TcpState.SynReceived)) {
      return false;
    }
    if (this.sendBuffer === null) this.allocateBuffers();
    const ring = this.sendBuffer!;
    const length = data.length;
    if (length > ring.capacity - ring.length) return false;
    if (ring.write(data, 0, length) > 0) this.host.markDirty(this);
    return true;
  }

  /** Copies up to `max` received bytes out (empty array when none; see atEndOfStream). */
  read(max = Infinity): Uint8Array {
    const ring = this.receiveBuffer;
    if (ring === null || ring.length === 0) return new Uint8Array(0);
    const out = ring.take(max < ring.length ? max : ring.length);
    if (ring.length === 0 && (this.state === TcpState.TimeWait || this.state === TcpState.Closed)) {
      this.receiveBuffer = null; // nothing more can arrive: give the memory back
      return out;
    }
    this.maybeWindowUpdate();
    return out;
  }

  /**
   * read() into the caller's buffer: copies up to target.length - offset received bytes to
   * target[offset…] and returns how many (0 when none; see atEndOfStream). No array of its own.
   */
  readInto(target: Uint8Array, offset: number): number {
    const ring = this.receiveBuffer;
    if (ring === null) return 0;
    const buffered = ring.length;
    if (buffered === 0) return 0;
    const room = target.length - offset;
    const n = room < buffered ? room : buffered;
    ring.copyOut(0, n, target, offset);
    ring.consume(n);
    if (n === buffered && (this.state === TcpState.TimeWait || this.state === TcpState.Closed)) {
      this.receiveBuffer = null; // nothing more can arrive: give the memory back
      return n;
    }
    this.maybeWindowUpdate();
    return n;
  }

  /**
   * The bytes receiveText() copied straight to readTarget (readTargetCount of them, > 0): what
   * readInto() does after its copy (the window-update test), and the count.
   */
  takeDirect(): number {
    const n = this.readTargetCount;
    this.readTargetCount = 0;
    this.maybeWindowUpdate();
    return n;
  }

  /** Sends FIN after the buffered data (RFC 9293 §3.10.4); reading continues (half-close). */
  shutdownSend(): void {
    if (this.finQueued) return;
    switch (this.state) {
      case TcpState.SynSent:
        this.terminate(null);
        return;
      case TcpState.SynReceived:
      case TcpState.Established:
      case TcpState.CloseWait:
        this.finQueued = true;
        this.finSequence = ((this.sendBufferSequence + this.unacknowledgedLength) >>> 0);
        this.host.markDirty(this);
        return;
      default:
        return;
    }
  }

  /** Full close: FIN, and received data is discarded from now on (orphaned connection). */
  close(): void {
    this.discardReceived = true;
    if (this.receiveBuffer !== null && this.receiveBuffer.length > 0) {
      this.receiveBuffer.consume(this.receiveBuffer.length);
      this.maybeWindowUpdate();
    }
    this.shutdownSend();
  }

  /** Sends RST and forgets the connection (RFC 9293 §3.10.5 ABORT). */
  abort(now: number): void {
    if (this.state === TcpState.Closed) return;
    if (this.state !== TcpState.SynSent && this.state !== TcpState.TimeWait) {
      this.transmit(this.sendMax, TCP_RST | TCP_ACK, null, 0, 0, now);
    }
    this.terminate(new TcpError("ECONNABORTED", "connection aborted locally"));
  }

  /** Enables or disables keep-alive (RFC 9293 §3.8.4); times in ms (defaults from config). */
  setKeepAlive(enabled: boolean, now: number, idle = this.keepAliveIdle, interval = this.keepAliveInterval, probes = this.keepAliveProbes): void {
    this.keepAliveEnabled = enabled;
    this.keepAliveIdle = idle;
    this.keepAliveInterval = interval;
    this.keepAliveProbes = probes;
    this.keepAliveProbesSent = 0;
    this.keepAliveDeadline = enabled && this.state === TcpState.Established ? now + idle : Infinity;
    this.host.timersChanged(this);
  }

  private maybeWindowUpdate(): void {
    if (this.state === TcpState.Closed || this.state === TcpState.SynSent) return;
    // freeReceiveSpace() and the update threshold (min(RCV.BUFF/2, MSS), RFC 9293 §3.8.6.2.2)
    // written out: the app's reads come through here
    let advertised = ((this.receiveWindowEdge - this.receiveNext) | 0);
    if (advertised < 0) advertised = 0;
    const ring = this.receiveBuffer;
    const bufferSize = this.host.config.receiveBufferSize;
    const free = this.discardReceived || ring === null ? bufferSize : ring.capacity - ring.length;
    const threshold = bufferSize >> 1 < this.maxSegment ? bufferSize >> 1 : this.maxSegment;
    if (free - advertised >= threshold) {
      this.ackNow = true;
      this.host.markDirty(this);
    }
  }

  // ─── Input (RFC 9293 §3.10.7) ────────────────────────────────────────────────────────

  /**
   * Processes one segment for this connection. Its data is packet[dataOffset, end) (the
   * packet is valid only during the call; no view of the data is made); `window` is the raw
   * 16-bit field; `options` were parsed by the stack (its SYN-only fields — MSS, window
   * scale, SACK-permitted — are valid only when the segment carries SYN).
   */
  input(sequence: number, acknowledgment: number, flags: number, window: number, options: TcpOptions, packet: Uint8Array, dataOffset: number, end: number, now: number): void {
    const state = this.state;
    if (state === TcpState.Established && (flags & (TCP_SYN | TCP_FIN | TCP_RST | TCP_ACK)) === TCP_ACK &&
        sequence === this.receiveNext) {
      // Header prediction (as in BSD's tcp_input): the usual segment, in order with an ACK and
      // neither SYN, FIN nor RST, on an ESTABLISHED connection. inputPredicted() takes it when
      // every check below would pass for it, with fewer calls and field reads.
      if (this.inputPredicted(sequence, acknowledgment, window, options, packet, dataOffset, end, now)) return;
    }
    if (state === TcpState.SynSent) {
      this.inputSynSent(sequence, acknowledgment, flags, window, options, now);
      return;
    }
    const isRst = (flags & TCP_RST) !== 0;
    let isSyn = (flags & TCP_SYN) !== 0;
    const isFin = (flags & TCP_FIN) !== 0;

    if (this.state === TcpState.SynReceived && isSyn && !isRst && sequence === this.initialReceiveSequence) {
      if ((flags & TCP_ACK) === 0) {
        // A retransmitted SYN: our SYN-ACK was lost; send it again.
        this.sendNext = this.sendUnacknowledged;
        this.output(now);
        return;
      }
      // Simultaneous open: the peer's SYN-ACK repeats its SYN; only its ACK is news.
      isSyn = false;
      sequence = this.receiveNext;
    }

    // RFC 7323 §5.3 PAWS: drop old duplicates whose timestamp went backwards.
    if (this.timestampsEnabled && options.hasTimestamps && !isRst && (((options.timestampValue - this.timestampRecent) | 0) < 0)) {
      this.host.counters.droppedPaws++;
      this.sendAckNow(now);
      return;
    }

    // §3.10.7.4 first: sequence number check.
    const dataLength = end - dataOffset;
    const segmentLength = dataLength + (isSyn ? 1 : 0) + (isFin ? 1 : 0);
    let receiveWindow = ((this.receiveWindowEdge - this.receiveNext) | 0);
    if (receiveWindow < 0) receiveWindow = 0;
    let acceptable: boolean;
    let zeroWindowProbe = false;
    if (segmentLength === 0) {
      acceptable = receiveWindow === 0
        ? sequence === this.receiveNext
        : (((this.receiveNext - sequence) | 0) <= 0) && (((sequence - (((this.receiveNext + receiveWindow) >>> 0))) | 0) < 0);
    } else if (receiveWindow === 0) {
      // Only ACK/RST information is taken from a segment into a zero window.
      acceptable = sequence === this.receiveNext;
      zeroWindowProbe = acceptable;
    } else {
      const windowEnd = ((this.receiveNext + receiveWindow) >>> 0);
      const last = ((sequence + (segmentLength - 1)) >>> 0);
      acceptable = ((((this.receiveNext - sequence) | 0) <= 0) && (((sequence - windowEnd) | 0) < 0)) ||
        ((((this.receiveNext - last) | 0) <= 0) && (((last - windowEnd) | 0) < 0));
    }
    if (!acceptable) {
      this.host.counters.droppedOutOfWindow++;
      if (isFin && this.state === TcpState.TimeWait) this.closeDeadline = now + this.host.config.timeWaitDuration;
      if (!isRst) this.sendAckNow(now);
      return;
    }

    // Second: RST (RFC 5961 §3.2): exact match resets, otherwise a challenge ACK.
    if (isRst) {
      if (sequence !== this.receiveNext) {
        this.sendChallengeAck(now);
        return;
      }
      this.host.counters.resetsReceived++;
      if (this.state === TcpState.SynReceived && this.passive) {
        this.terminate(null); // back to LISTEN: the listener simply forgets it
      } else if (this.state === TcpState.Closing || this.state === TcpState.LastAck || this.state === TcpState.TimeWait) {
        this.terminate(null);
      } else {
        this.terminate(new TcpError(this.state === TcpState.SynReceived ? "ECONNREFUSED" : "ECONNRESET", "connection reset by peer"));
      }
      return;
    }

    // Fourth: SYN in a synchronized state (RFC 5961 §4): challenge ACK.
    if (isSyn) {
      if (this.state === TcpState.TimeWait) {
        // Retransmitted/duplicate SYN into TIME-WAIT: just re-ACK (RFC 9293 §3.10.7.4).
        this.sendAckNow(now);
        return;
      }
      this.sendChallengeAck(now);
      return;
    }

    // Fifth: ACK field.
    if ((flags & TCP_ACK) === 0) return;

    this.keepAliveProbesSent = 0;
    if (this.keepAliveEnabled && this.state === TcpState.Established) this.keepAliveDeadline = now + this.keepAliveIdle;

    // RFC 7323 §4.3: update TS.Recent when the segment covers Last.ACK.sent.
    if (this.timestampsEnabled && options.hasTimestamps && (((sequence - this.lastAckSent) | 0) <= 0) &&
        (((this.lastAckSent - (((sequence + segmentLength) >>> 0))) | 0) <= 0)) {
      this.timestampRecent = options.timestampValue;
    }

    if (this.state === TcpState.SynReceived) {
      if (!((((this.sendUnacknowledged - acknowledgment) | 0) < 0) && (((acknowledgment - this.sendMax) | 0) <= 0))) {
        this.sendReset(acknowledgment, 0, false);
        return;
      }
      if (this.passive && !this.host.completeHandshake(this)) {
        this.host.counters.droppedListenOverflow++;
        return; // accept queue full: ignore the ACK; the peer retransmits (Linux does the same)
      }
      this.allocateBuffers();
      this.state = TcpState.Established;
      this.sendWindow = window << this.sendWindowShift;
      this.maxSendWindow = Math.max(this.maxSendWindow, this.sendWindow);
      this.sendWindowUpdateSequence = sequence;
      this.sendWindowUpdateAck = acknowledgment;
      if (this.keepAliveEnabled) this.keepAliveDeadline = now + this.keepAliveIdle;
      this.events?.onEstablished();
    }

    if (!this.processAck(sequence, acknowledgment, window, segmentLength === 0, options, now)) return;
    if (this.state === TcpState.Closed) return;

    // Seventh: segment text (ESTABLISHED, FIN-WAIT-1, FIN-WAIT-2).
    if (zeroWindowProbe) {
      this.host.counters.droppedOutOfWindow++;
      this.sendAckNow(now);
      return;
    }
    const receiving = this.state === TcpState.Established || this.state === TcpState.FinWait1 || this.state === TcpState.FinWait2;
    let dataEnd = ((sequence + dataLength) >>> 0);
    if (receiving && dataLength > 0) {
      this.receiveText(sequence, packet, dataOffset, dataLength, now);
    } else if (dataLength > 0) {
      dataEnd = sequence; // after the peer's FIN nothing more is accepted
    }

    // Eighth: FIN (only once everything before it arrived).
    if (isFin && receiving) {
      if (dataEnd === this.receiveNext) this.receiveFin(now);
      else if ((((dataEnd - this.receiveNext) | 0) > 0)) this.pendingFinSequence = dataEnd;
    }
    if (this.pendingFinSequence >= 0 && this.receiveNext === this.pendingFinSequence && !this.finReceived) {
      this.pendingFinSequence = -1;
      this.receiveFin(now);
    }
    this.output(now);
  }

  /**
   * input() for an in-order ACK segment (no SYN, FIN, RST) on an ESTABLISHED connection:
   * RFC 9293 §3.10.7.4's steps as input() runs them, for the case where none of their
   * exceptions applies: false (nothing done) when one might — a PAWS failure (RFC 7323 §5.3),
   * data into a closed window, an ACK outside [SND.UNA, SND.MAX] (RFC 5961 §5.2 and the
   * general path decide) — and input() runs its general path then.
   */
  private inputPredicted(sequence: number, acknowledgment: number, window: number, options: TcpOptions, packet: Uint8Array, dataOffset: number, end: number, now: number): boolean {
    const timestamps = this.timestampsEnabled && options.hasTimestamps;
    if (timestamps && (((options.timestampValue - this.timestampRecent) | 0) < 0)) return false; // PAWS
    const dataLength = end - dataOffset;
    // In order, so acceptable (first check) unless it carries data into a zero window.
    if (dataLength > 0 && (((this.receiveWindowEdge - sequence) | 0) <= 0)) return false;
    const sendUnacknowledged = this.sendUnacknowledged;
    const sendMax = this.sendMax;
    // Fifth check's limits: neither older than SND.UNA nor beyond SND.MAX.
    if ((((acknowledgment - sendUnacknowledged) | 0) < 0) || (((acknowledgment - sendMax) | 0) > 0)) return false;

    this.keepAliveProbesSent = 0;
    if (this.keepAliveEnabled) this.keepAliveDeadline = now + this.keepAliveIdle;
    // RFC 7323 §4.3: update TS.Recent when the segment covers Last.ACK.sent.
    if (timestamps) {
      const lastAckSent = this.lastAckSent;
      if ((((sequence - lastAckSent) | 0) <= 0) && (((lastAckSent - (((sequence + dataLength) >>> 0))) | 0) <= 0)) {
        this.timestampRecent = options.timestampValue;
      }
    }
    // processAck(), past the checks above.
    const scaledWindow = window << this.sendWindowShift;
    if (acknowledgment !== sendUnacknowledged) {
      this.acknowledge(acknowledgment, timestamps ? options.timestampEcho : 0, now);
    } else if (dataLength === 0 && scaledWindow === this.sendWindow && sendMax !== sendUnacknowledged) {
      this.duplicateAck(now);
    }
    this.updateSendWindow(sequence, acknowledgment, scaledWindow);
    // The app may have closed or aborted the connection from onWritable().
    const state = this.state;
    if (state === TcpState.Closed) return true;
    // Seventh: segment text.
    if (dataLength > 0 && (state === TcpState.Established || state === TcpState.FinWait1 || state === TcpState.FinWait2)) {
      this.receiveText(sequence, packet, dataOffset, dataLength, now);
    }
    // Eighth: a FIN held beyond a hole that this segment filled.
    if (this.pendingFinSequence >= 0 && this.receiveNext === this.pendingFinSequence && !this.finReceived) {
      this.pendingFinSequence = -1;
      this.receiveFin(now);
    }
    this.output(now);
    return true;
  }

  private inputSynSent(sequence: number, acknowledgment: number, flags: number, window: number, options: TcpOptions, now: number): void {
    const hasAck = (flags & TCP_ACK) !== 0;
    // §3.10.7.3 first: ACK acceptability.
    if (hasAck && ((((acknowledgment - this.initialSendSequence) | 0) <= 0) || (((acknowledgment - this.sendMax) | 0) > 0))) {
      if ((flags & TCP_RST) === 0) this.sendReset(acknowledgment, 0, false);
      this.host.counters.droppedOutOfWindow++;
      return;
    }
    if ((flags & TCP_RST) !== 0) {
      if (hasAck) {
        this.host.counters.resetsReceived++;
        this.terminate(new TcpError("ECONNREFUSED", "connection refused"));
      }
      return;
    }
    if ((flags & TCP_SYN) === 0) return;
    this.initialReceiveSequence = sequence;
    this.receiveNext = ((sequence + 1) >>> 0);
    this.receiveWindowEdge = this.receiveNext;
    this.negotiateOptions(options);
    if (this.timestampsEnabled) this.timestampRecent = options.timestampValue;
    this.receiveWindowEdge = ((this.receiveNext + (Math.min(this.freeReceiveSpace(), 0xffff))) >>> 0); // what our SYN offered
    if (hasAck) {
      this.sendUnacknowledged = acknowledgment;
      if ((((this.sendNext - acknowledgment) | 0) < 0)) this.sendNext = acknowledgment;
      this.sendWindow = window; // RFC 7323 §2.2: never scaled in a SYN
      this.maxSendWindow = this.sendWindow;
      this.sendWindowUpdateSequence = sequence;
      this.sendWindowUpdateAck = acknowledgment;
      this.retransmitDeadline = Infinity;
      this.retransmitCount = 0;
      this.sampleRoundTrip(this.timestampsEnabled && options.hasTimestamps ? options.timestampEcho : 0, now);
      this.state = TcpState.Established;
      if (this.keepAliveEnabled) this.keepAliveDeadline = now + this.keepAliveIdle;
      this.ackNow = true;
      this.events?.onEstablished();
      this.output(now);
    } else {
      // Simultaneous open (§3.10.7.3 fourth): SYN-RECEIVED, resend our SYN as a SYN-ACK.
      this.sendWindow = window;
      this.maxSendWindow = window;
      this.sendWindowUpdateSequence = sequence;
      this.state = TcpState.SynReceived;
      this.sendNext = this.sendUnacknowledged;
      this.retransmitDeadline = Infinity;
      this.output(now);
    }
  }

  /** Step five of §3.10.7.4; returns false when the segment must be dropped. */
  private processAck(sequence: number, acknowledgment: number, window: number, pureAck: boolean, options: TcpOptions, now: number): boolean {
    // RFC 5961 §5.2: an ACK too old to be plausible draws a challenge ACK.
    const maxWindow = this.maxSendWindow > 1 ? this.maxSendWindow : 1;
    if ((((acknowledgment - (((this.sendUnacknowledged - maxWindow) >>> 0))) | 0) < 0)) {
      this.sendChallengeAck(now);
      return false;
    }
    if ((((acknowledgment - this.sendMax) | 0) > 0)) {
      this.host.counters.droppedOutOfWindow++;
      this.sendAckNow(now);
      return false;
    }
    const scaledWindow = window << this.sendWindowShift;
    if ((((acknowledgment - this.sendUnacknowledged) | 0) > 0)) {
      this.acknowledge(acknowledgment, this.timestampsEnabled && options.hasTimestamps ? options.timestampEcho : 0, now);
    } else if (acknowledgment === this.sendUnacknowledged && pureAck && scaledWindow === this.sendWindow &&
        this.sendMax !== this.sendUnacknowledged) {
      this.duplicateAck(now);
    }
    this.updateSendWindow(sequence, acknowledgment, scaledWindow);
    return true;
  }

  /**
   * New data acknowledged up to `acknowledgment`; `echo` is the segment's TSecr when
   * timestamps are in use on it (RFC 7323 §3.2), else 0 (no timestamp sample).
   */
  private acknowledge(acknowledgment: number, echo: number, now: number): void {
    const acked = ((acknowledgment - this.sendUnacknowledged) | 0);
    // Which parts are acknowledged: SYN, data, FIN.
    const ring = this.sendBuffer;
    if (ring !== null) {
      let dataAcked = ((acknowledgment - this.sendBufferSequence) | 0);
      if (dataAcked > ring.length) dataAcked = ring.length;
      if (dataAcked > 0) {
        ring.consume(dataAcked);
        this.sendBufferSequence = ((this.sendBufferSequence + dataAcked) >>> 0);
      }
    } else if ((((acknowledgment - this.sendBufferSequence) | 0) > 0)) {
      this.sendBufferSequence = acknowledgment;
    }
    // sampleRoundTrip() only when it may have a sample to take (its own first tests, written out).
    if (echo !== 0 || this.timedAt >= 0) this.sampleRoundTrip(echo, now);
    this.sendUnacknowledged = acknowledgment;
    if ((((this.sendNext - acknowledgment) | 0) < 0)) this.sendNext = acknowledgment;
    this.retransmitCount = 0;

    // Congestion control (RFC 6582 §3.2 step 3).
    if (this.inRecovery) {
      if ((((acknowledgment - this.recoverSequence) | 0) >= 0)) {
        this.inRecovery = false;
        this.congestion.onRecoveryEnd(((this.sendMax - acknowledgment) | 0), this.maxSegment);
      } else {
        // Partial ACK: retransmit the next unacknowledged segment at once.
        this.congestion.onPartialAck(acked, this.maxSegment);
        this.retransmitFirst(now);
      }
    } else {
      this.congestion.onAck(acked, this.maxSegment, now);
    }
    this.duplicateAcks = 0;

    if (this.sendUnacknowledged === this.sendMax) {
      this.retransmitDeadline = Infinity;
    } else {
      this.retransmitDeadline = now + this.retransmitTimeout;
    }

    // Our FIN acknowledged?
    if (this.finQueued && (((acknowledgment - this.finSequence) | 0) > 0)) {
      switch (this.state) {
        case TcpState.FinWait1:
          this.state = TcpState.FinWait2;
          if (this.discardReceived) this.closeDeadline = now + this.host.config.finWait2Timeout;
          break;
        case TcpState.Closing:
          this.enterTimeWait(now);
          break;
        case TcpState.LastAck:
          this.terminate(null);
          return;
        default:
          break;
      }
    }
    // canSend, written out (a getter call per ACK otherwise)
    if (acked > 0 && !this.finQueued && (this.state === TcpState.Established || this.state === TcpState.CloseWait ||
        this.state === TcpState.SynSent || this.state === TcpState.SynReceived)) {
      this.events?.onWritable();
    }
  }

  private duplicateAck(now: number): void {
    this.duplicateAcks++;
    if (this.inRecovery) {
      this.congestion.onDuplicateAckInRecovery(this.maxSegment);
      return;
    }
    // RFC 6582 §3.2 step 2: enter only if the ACK covers more than "recover".
    if (this.duplicateAcks === 3 && (((this.sendUnacknowledged - this.recoverSequence) | 0) > 0)) {
      this.inRecovery = true;
      this.recoverSequence = this.sendMax;
      this.congestion.onFastRetransmit(((this.sendMax - this.sendUnacknowledged) | 0), this.maxSegment);
      this.host.counters.fastRetransmits++;
      this.retransmitFirst(now);
    }
  }

  /** Retransmits the segment at SND.UNA without moving SND.NXT (fast retransmit). */
  private retransmitFirst(now: number): void {
    const ring = this.sendBuffer;
    if (ring === null) return;
    const offset = ((this.sendUnacknowledged - this.sendBufferSequence) | 0);
    if (offset < 0) return;
    const length = Math.min(this.maxSegment, ring.length - offset);
    const fin = this.finQueued && ((this.sendUnacknowledged + (Math.max(length, 0))) >>> 0) === this.finSequence;
    if (length <= 0 && !fin) return;
    this.timedAt = -1; // Karn
    this.host.counters.retransmissions++;
    this.transmit(this.sendUnacknowledged, TCP_ACK | (fin ? TCP_FIN : 0), ring, offset, Math.max(length, 0), now);
    this.retransmitDeadline = now + this.retransmitTimeout;
  }

  /** Window update (§3.10.7.4): SND.WND from a segment newer by the SND.WL1/SND.WL2 rule. */
  private updateSendWindow(sequence: number, acknowledgment: number, scaledWindow: number): void {
    const updateSequence = this.sendWindowUpdateSequence;
    if ((((updateSequence - sequence) | 0) < 0) ||
        (updateSequence === sequence && (((this.sendWindowUpdateAck - acknowledgment) | 0) <= 0))) {
      const opened = this.sendWindow === 0 && scaledWindow > 0;
      this.sendWindow = scaledWindow;
      this.sendWindowUpdateSequence = sequence;
      this.sendWindowUpdateAck = acknowledgment;
      if (scaledWindow > this.maxSendWindow) this.maxSendWindow = scaledWindow;
      if (opened) {
        // §3.8.6.1: the window opened; the persist timer stops
        this.persistDeadline = Infinity;
        this.persistBackoff = 0;
      }
    }
  }

  /**
   * RFC 6298 §2–3 (Karn's rule via timestamps, RFC 7323 §4). Runs for most ACKs of new data,
   * so the timestamp clock (as in transmit()) and min/max/abs are written out (Math's are
   * native calls). `echo`: the segment's TSecr when timestamps are in use on it, else 0 (the
   * callers read it once from the options).
   */
  private sampleRoundTrip(echo: number, now: number): void {
    let sample = -1;
    if (echo !== 0) {
      sample = (((((now >>> 0) + this.timestampOffset) >>> 0) - echo) >>> 0); // TSval now, as transmit()
      if (sample > 0x7fffffff) sample = -1;
    } else if (this.timedAt >= 0 && (((this.sendUnacknowledged - this.timedSequence) | 0) >= 0)) {
      sample = now - this.timedAt;
      this.timedAt = -1;
    }
    if (sample < 0) return;
    let smoothed = this.smoothedRoundTrip;
    let variance: number;
    if (smoothed < 0) {
      smoothed = sample;
      variance = sample / 2;
    } else {
      const error = smoothed - sample;
      variance = 0.75 * this.roundTripVariance + 0.25 * (error < 0 ? -error : error);
      smoothed = 0.875 * smoothed + 0.125 * sample;
    }
    this.smoothedRoundTrip = smoothed;
    this.roundTripVariance = variance;
    // RTO = min(max, max(min, SRTT + max(G, 4·RTTVAR))), with a clock granularity G of 1 ms
    const config = this.host.config;
    const spread = 4 * variance;
    let timeout = smoothed + (spread > 1 ? spread : 1);
    if (timeout < config.minRetransmitTimeout) timeout = config.minRetransmitTimeout;
    const limit = config.maxRetransmitTimeout;
    this.retransmitTimeout = timeout < limit ? timeout : limit;
  }

  /** The text of a segment: `dataLength` bytes at packet[dataOffset…], sequence `sequence`. */
  private receiveText(sequence: number, packet: Uint8Array, dataOffset: number, dataLength: number, now: number): void {
    let offset = 0;
    if ((((sequence - this.receiveNext) | 0) < 0)) offset = ((this.receiveNext - sequence) | 0);
    const start = ((sequence + offset) >>> 0);
    // length = min(data after the part already received, room in the window, free buffer
    // space): comparisons, not Math.min (a native call), and freeReceiveSpace() written out.
    const ring = this.receiveBuffer;
    const free = this.discardReceived || ring === null ? this.host.config.receiveBufferSize : ring.capacity - ring.length;
    const windowRoom = ((this.receiveWindowEdge - start) | 0);
    let length = dataLength - offset;
    if (windowRoom < length) length = windowRoom;
    if (free < length) length = free;
    if (length <= 0) {
      this.ackNow = true;
      return;
    }
    if (start !== this.receiveNext) {
      // Out of order: hold it and send a duplicate ACK at once (RFC 5681 §4.2).
      const from = dataOffset + offset;
      if (!this.outOfOrder.insert(start, packet.subarray(from, from + length))) this.host.counters.droppedOutOfOrderFull++;
      this.ackNow = true;
      return;
    }
    const hadHole = this.outOfOrder.bytes !== 0; // held segments are never empty
    if (this.discardReceived) {
      this.receiveNext = ((this.receiveNext + length) >>> 0);
    } else {
      let from = dataOffset + offset;
      let rest = length;
      const target = this.readTarget;
      if (target !== null && ring!.length === 0) {
        // A read waits and nothing is buffered before these bytes: straight to the reader.
        const targetOffset = this.readTargetOffset;
        const room = target.length - targetOffset;
        const n = room < rest ? room : rest;
        target.set(packet.subarray(from, from + n), targetOffset);
        this.readTarget = null;
        this.readTargetCount = n;
        from += n;
        rest -= n;
      }
      if (rest > 0) ring!.write(packet, from, rest);
      this.receiveNext = ((this.receiveNext + length) >>> 0);
    }
    if (hadHole) {
      this.receiveNext = this.outOfOrder.drainInto(this.receiveNext, this.discardReceived ? null : this.receiveBuffer);
      this.ackNow = true; // RFC 5681 §4.2: ACK at once when a hole fills
    }
    // Delayed ACK (RFC 9293 §3.8.6.3): every second full-sized segment, else within the timeout.
    this.bytesSinceAck += length;
    if (this.bytesSinceAck >= 2 * this.maxSegment) this.ackNow = true;
    else if (this.delayedAckDeadline === Infinity) this.delayedAckDeadline = now + this.host.config.delayedAckTimeout;
    if (!this.discardReceived) this.events?.onReadable();
  }

  private receiveFin(now: number): void {
    if (this.finReceived) {
      if (this.state === TcpState.TimeWait) this.closeDeadline = now + this.host.config.timeWaitDuration;
      this.ackNow = true;
      return;
    }
    this.finReceived = true;
    this.receiveNext = ((this.receiveNext + 1) >>> 0);
    this.ackNow = true;
    switch (this.state) {
      case TcpState.SynReceived:
      case TcpState.Established:
        this.state = TcpState.CloseWait;
        this.keepAliveDeadline = Infinity;
        break;
      case TcpState.FinWait1:
        // Our FIN not yet acknowledged (else processAck moved us to FIN-WAIT-2): simultaneous close.
        this.state = TcpState.Closing;
        break;
      case TcpState.FinWait2:
        this.enterTimeWait(now);
        break;
      default:
        break;
    }
    this.events?.onReadable();
  }

  private enterTimeWait(now: number): void {
    this.state = TcpState.TimeWait;
    this.releaseBuffers();
    this.retransmitDeadline = Infinity;
    this.persistDeadline = Infinity;
    this.keepAliveDeadline = Infinity;
    this.closeDeadline = now + this.host.config.timeWaitDuration;
    this.events?.onClosed(null);
    this.events = null;
  }

  // ─── Output ──────────────────────────────────────────────────────────────────────────

  /** Sends whatever is due: SYN, data within the windows, FIN, or an ACK. */
  output(now: number): void {
    this.outputQueued = false; // whatever the stack queued this connection for is done here
    switch (this.state) {
      case TcpState.Closed:
        return;
      case TcpState.SynSent:
      case TcpState.SynReceived:
        if (this.sendNext === this.initialSendSequence) this.sendSyn(now);
        if (this.state === TcpState.SynReceived && this.ackNow) this.sendAckNow(now);
        return;
      case TcpState.TimeWait:
        if (this.ackNow) this.sendAckNow(now);
        return;
      default:
        break;
    }
    const ring = this.sendBuffer;
    // Read once: sending changes none of these (each property read is a lookup in the interpreter).
    const bufferSequence = this.sendBufferSequence;
    const maxSegment = this.maxSegment;
    const window = this.sendWindow < this.congestion.window ? this.sendWindow : this.congestion.window;
    // Payload bytes one segment may carry with the device's segmentation offload (0: none);
    // asked at most once per call, and only when more than one segment's worth is sendable.
    let large = -1;
    while (ring !== null) {
      const sendNext = this.sendNext;
      const offset = ((sendNext - bufferSequence) | 0);
      if (offset < 0) break;
      const available = ring.length - offset;
      // The FIN sits right after the last data byte; it is pending until SND.NXT passes it.
      const finPending = this.finQueued && (((sendNext - this.finSequence) | 0) <= 0);
      if (available <= 0 && !finPending) break;
      const flight = ((sendNext - this.sendUnacknowledged) | 0);
      // length = max(0, min(available, SMSS, min(SND.WND, cwnd) − flight)), without a native call per min/max
      const usable = window - flight;
      let length = available < maxSegment ? available : maxSegment;
      if (usable < length) length = usable;
      if (length < 0) length = 0;
      if (available > maxSegment && usable >= 2 * maxSegment && (((sendNext - this.sendMax) | 0) >= 0)) {
        // New data for several segments: one large segment that the device cuts into ones of
        // maxSegment payload bytes (TSO). Whole segments only: a short tail goes the usual
        // way (Nagle, SWS avoidance), and so does the segment that carries the FIN.
        if (large < 0) large = this.segmentedPayloadLimit();
        if (large >= 2 * maxSegment) {
          let bytes = available < large ? available : large;
          if (usable < bytes) bytes = usable;
          bytes -= bytes % maxSegment;
          if (bytes === available && finPending) bytes -= maxSegment;
          if (bytes > maxSegment) length = bytes;
        }
      }
      const finDue = finPending && length === available;
      if (length === 0 && !finDue) break; // window closed: the persist timer takes over
      if (!finDue && length < maxSegment) {
        // Nagle (RFC 9293 §3.7.4) and sender-side SWS avoidance (§3.8.6.2.1): a short segment
        // goes out only when it is all we have and nothing is in flight (or Nagle is off),
        // or when it fills at least half of the largest window the peer offered.
        const nagleAllows = length === available && (this.noDelay || flight === 0);
        if (!nagleAllows && length < (this.maxSendWindow >> 1)) break;
      }
      let flags = TCP_ACK;
      if (length > 0 && length === available) flags |= TCP_PSH;
      if (finDue) flags |= TCP_FIN;
      const resend = (((sendNext - this.sendMax) | 0) < 0);
      if (resend) this.host.counters.retransmissions++;
      if (!this.transmit(sendNext, flags, ring, offset, length, now)) break;
      if (this.timedAt < 0 && !resend && !this.timestampsEnabled) {
        this.timedAt = now;
        this.timedSequence = ((sendNext + length) >>> 0);
      }
      const next = ((sendNext + (length + (finDue ? 1 : 0))) >>> 0);
      this.sendNext = next;
      if ((((next - this.sendMax) | 0) > 0)) this.sendMax = next;
      if (this.retransmitDeadline === Infinity) this.retransmitDeadline = now + this.retransmitTimeout;
      this.persistDeadline = Infinity;
      if (finDue) {
        if (this.state === TcpState.Established) this.state = TcpState.FinWait1;
        else if (this.state === TcpState.CloseWait) this.state = TcpState.LastAck;
        break;
      }
    }
    // Data waiting with nothing in flight and no window: arm the persist timer (§3.8.6.1).
    if (ring !== null && this.sendUnacknowledged === this.sendMax && this.persistDeadline === Infinity) {
      const offset = ((this.sendNext - this.sendBufferSequence) | 0);
      if (ring.length - offset > 0) {
        this.persistDeadline = now + this.persistInterval();
      }
    }
    if (this.ackNow) this.sendAckNow(now);
  }

  /** Payload bytes of the largest segment sendSegmented() takes to this peer now (0: none). */
  private segmentedPayloadLimit(): number {
    const ip = this.host.ip;
    if (ip.segmentedLimit === undefined || ip.sendSegmented === undefined) return 0;
    const limit = ip.segmentedLimit(this.remoteAddress) - (this.timestampsEnabled ? TCP_HEADER_LENGTH + 12 : TCP_HEADER_LENGTH);
    return limit > 0 ? limit : 0;
  }

  private persistInterval(): number {
    const config = this.host.config;
    return Math.min(config.maxRetransmitTimeout, Math.max(config.minRetransmitTimeout, this.retransmitTimeout) * (1 << Math.min(this.persistBackoff, 16)));
  }

  private sendSyn(now: number): void {
    const synAck = this.state === TcpState.SynReceived;
    const config = this.host.config;
    const h = this.header;
    h.maxSegmentSize = this.localMaxSegment();
    h.windowScale = config.windowScaling && this.windowScalingAgreed ? this.receiveWindowShift : -1;
    h.sackPermitted = false;
    // SACK blocks are not used, so SACK-permitted is never offered.
    const flags = TCP_SYN | (synAck ? TCP_ACK : 0);
    this.transmit(this.initialSendSequence, flags, null, 0, 0, now);
    h.maxSegmentSize = -1;
    h.windowScale = -1;
    this.sendNext = ((this.initialSendSequence + 1) >>> 0);
    if ((((this.sendNext - this.sendMax) | 0) > 0)) this.sendMax = this.sendNext;
    if (this.retransmitDeadline === Infinity) this.retransmitDeadline = now + this.retransmitTimeout;
  }

  private sendAckNow(now: number): void {
    // SND.MAX, not SND.NXT: after a timeout SND.NXT rewinds, but the peer may already hold
    // data up to SND.MAX and would find an older sequence number unacceptable.
    this.transmit(this.sendMax, TCP_ACK, null, 0, 0, now);
  }

  private sendChallengeAck(now: number): void {
    if (this.host.allowChallengeAck(now)) {
      this.host.counters.challengeAcks++;
      this.sendAckNow(now);
    } else {
      this.host.counters.challengeAcksSuppressed++;
    }
  }

  private sendReset(sequence: number, acknowledgment: number, withAck: boolean): void {
    const counters = this.host.counters;
    counters.resetsSent++;
    const h = this.header;
    h.sequence = sequence;
    h.acknowledgment = acknowledgment;
    h.flags = TCP_RST | (withAck ? TCP_ACK : 0);
    h.window = 0;
    h.hasTimestamps = false;
    this.fillDataLength = 0;
    if (this.host.ip.send(this.remoteAddress, PROTOCOL_TCP, TCP_HEADER_LENGTH, this.fill)) counters.segmentsSent++;
    else counters.droppedSendFailed++;
  }

  private freeReceiveSpace(): number {
    if (this.discardReceived) return this.host.config.receiveBufferSize;
    return this.receiveBuffer === null ? this.host.config.receiveBufferSize : this.receiveBuffer.free;
  }

  /**
   * Emits a segment of this connection; payload from `ring` at `offset`. False when IP refused it.
   * It carries the window to advertise now (RFC 9293 §3.8.6.2.2 receiver SWS avoidance; the
   * right edge never shrinks), computed here rather than in a function of its own, with
   * freeReceiveSpace() and the update threshold written out and min/max as comparisons:
   * this runs for every segment sent, so the header set-up and the timestamp clock are written
   * out here too.
   */
  private transmit(sequence: number, flags: number, ring: ByteRing | null, offset: number, length: number, now: number): boolean {
    const host = this.host;
    const receiveBuffer = this.receiveBuffer;
    const receiveNext = this.receiveNext;
    const bufferSize = host.config.receiveBufferSize;
    const free = this.discardReceived || receiveBuffer === null ? bufferSize : receiveBuffer.capacity - receiveBuffer.length;
    const syn = (flags & TCP_SYN) !== 0;
    let window: number;
    if (syn) {
      window = free < 0xffff ? free : 0xffff; // never scaled in a SYN (RFC 7323 §2.2)
      if (this.state === TcpState.SynReceived) this.receiveWindowEdge = ((receiveNext + window) >>> 0);
    } else {
      const shift = this.receiveWindowShift;
      const windowEdge = this.receiveWindowEdge;
      let current = ((windowEdge - receiveNext) | 0);
      if (current < 0) current = 0;
      const maxSegment = this.maxSegment;
      const threshold = bufferSize >> 1 < maxSegment ? bufferSize >> 1 : maxSegment;
      let bytes = free - current >= threshold ? free : (current < free ? current : free);
      if (bytes < current) bytes = current; // never shrink the right edge
      window = bytes >>> shift;
      if (window > 0xffff) window = 0xffff;
      const edge = ((receiveNext + (window << shift)) >>> 0);
      if ((((edge - windowEdge) | 0) > 0)) this.receiveWindowEdge = edge;
    }
    const hasAck = (flags & TCP_ACK) !== 0;
    const h = this.header;
    h.sequence = sequence;
    h.acknowledgment = hasAck ? receiveNext : 0;
    h.flags = flags;
    h.window = window;
    const timestamps = (flags & TCP_RST) === 0 && this.timestampsEnabled;
    h.hasTimestamps = timestamps;
    if (timestamps) {
      // The timestamp clock (RFC 7323 §5.4): whole milliseconds of `now` plus this
      // connection's offset, modulo 2^32. `now >>> 0` is floor(now) mod 2^32 for now ≥ 0, so
      // the sum modulo 2^32 is exact — and cheaper than `now % 1`, a floating-point
      // remainder through the interpreter's slow path (fmod).
      h.timestampValue = ((now >>> 0) + this.timestampOffset) >>> 0;
      h.timestampEcho = hasAck ? this.timestampRecent : 0;
    }
    this.fillSource = ring;
    this.fillDataOffset = offset;
    this.fillDataLength = length;
    // Only SYNs carry options other than timestamps (sendSyn sets and clears them).
    const headerLength = syn ? tcpHeaderLengthFor(h) : timestamps ? TCP_HEADER_LENGTH + 12 : TCP_HEADER_LENGTH;
    const ok = length > this.maxSegment
      ? host.ip.sendSegmented!(this.remoteAddress, headerLength + length, headerLength, this.maxSegment, this.fill)
      : host.ip.send(this.remoteAddress, PROTOCOL_TCP, headerLength + length, this.fill);
    this.fillSource = null;
    if (ok) host.counters.segmentsSent++;
    else host.counters.droppedSendFailed++;
    if (hasAck) {
      this.lastAckSent = receiveNext;
      this.ackNow = false;
      this.delayedAckDeadline = Infinity;
      this.bytesSinceAck = 0;
    }
    return ok;
  }

  /**
   * IpSender's fill: the segment set up by transmit() or sendReset(), written at buffer[offset…].
   * A header without options but timestamps (NOP NOP TS, as writeTcpHeader lays them out) is
   * written out here: a call costs more than its byte stores; SYNs go through writeTcpHeader.
   * The bytes that never change on a connection come from its templates (timestampHeader,
   * plainHeader) with one `set`: a native call costs less than the 9–13 byte stores it replaces.
   */
  private fillSegment(buffer: Uint8Array, offset: number): void {
    const h = this.header;
    const flags = h.flags;
    let headerLength: number;
    if ((flags & TCP_SYN) !== 0) {
      headerLength = writeTcpHeader(buffer, h, offset);
    } else {
      const o = offset;
      const sequence = h.sequence, acknowledgment = h.acknowledgment, window = h.window;
      if (h.hasTimestamps) {
        // ports, data offset, checksum and urgent pointer (0), NOP NOP kind length: the template
        headerLength = TCP_HEADER_LENGTH + 12;
        buffer.set(this.timestampHeader, o);
        const value = h.timestampValue, echo = h.timestampEcho;
        buffer[o + 24] = value >>> 24; buffer[o + 25] = value >>> 16; buffer[o + 26] = value >>> 8; buffer[o + 27] = value;
        buffer[o + 28] = echo >>> 24; buffer[o + 29] = echo >>> 16; buffer[o + 30] = echo >>> 8; buffer[o + 31] = echo;
      } else {
        headerLength = TCP_HEADER_LENGTH;
        buffer.set(this.plainHeader, o); // ports, data offset, checksum and urgent pointer (0)
      }
      buffer[o + 4] = sequence >>> 24; buffer[o + 5] = sequence >>> 16; buffer[o + 6] = sequence >>> 8; buffer[o + 7] = sequence;
      buffer[o + 8] = acknowledgment >>> 24; buffer[o + 9] = acknowledgment >>> 16;
      buffer[o + 10] = acknowledgment >>> 8; buffer[o + 11] = acknowledgment;
      buffer[o + 13] = flags;
      buffer[o + 14] = window >> 8; buffer[o + 15] = window;
    }
    const length = this.fillDataLength;
    if (length > 0) {
      const source = this.fillSource;
      if (source !== null) source.copyOut(this.fillDataOffset, length, buffer, offset + headerLength);
    }
    // The checksum (RFC 9293 §3.1) summed in place over the segment, the pseudo-header's
    // constant part precomputed; two folds suffice below 2^32 (any segment under 64 KiB).
    const total = headerLength + length;
    if (length > this.maxSegment) {
      // For the device to cut (sendSegmented): the pseudo-header sum over the whole segment,
      // folded, not complemented; each piece's checksum is completed from it.
      let partial = this.pseudoHeaderSum + total;
      partial = (partial & 0xffff) + (partial >>> 16);
      partial = (partial & 0xffff) + (partial >>> 16);
      buffer[offset + 16] = partial >> 8;
      buffer[offset + 17] = partial;
      return;
    }
    let sum = sumWordsFrom(buffer, offset, offset + total, this.pseudoHeaderSum + total);
    sum = (sum & 0xffff) + (sum >>> 16);
    sum = ~((sum & 0xffff) + (sum >>> 16));
    buffer[offset + 16] = sum >> 8;
    buffer[offset + 17] = sum;
  }

  // ─── Timers ──────────────────────────────────────────────────────────────────────────

  /** Runs expired timers and pending output. */
  poll(now: number): void {
    if (now >= this.closeDeadline) {
      this.closeDeadline = Infinity;
      if (this.state === TcpState.TimeWait) {
        this.terminate(null);
        return;
      }
      if (this.state === TcpState.FinWait2) {
        this.terminate(new TcpError("ETIMEDOUT", "FIN-WAIT-2 timed out"));
        return;
      }
    }
    if (now >= this.retransmitDeadline) {
      this.retransmitDeadline = Infinity;
      this.onRetransmitTimeout(now);
      if (this.state === TcpState.Closed) return;
    }
    if (now >= this.persistDeadline) {
      this.persistDeadline = Infinity;
      this.onPersistTimeout(now);
    }
    if (now >= this.keepAliveDeadline) {
      this.keepAliveDeadline = Infinity;
      this.onKeepAliveTimeout(now);
      if (this.state === TcpState.Closed) return;
    }
    if (now >= this.delayedAckDeadline) {
      this.delayedAckDeadline = Infinity;
      this.ackNow = true;
    }
    this.output(now);
  }

  /** RFC 6298 §5.4–5.7: back off, go back to SND.UNA, shrink cwnd. */
  private onRetransmitTimeout(now: number): void {
    if (this.sendUnacknowledged === this.sendMax) return;
    const synPhase = this.state === TcpState.SynSent || this.state === TcpState.SynReceived;
    const limit = synPhase ? this.host.config.maxSynRetransmissions : this.host.config.maxRetransmissions;
    if (this.retransmitCount >= limit) {
      this.host.counters.timeouts++;
      if (this.state === TcpState.SynReceived && this.passive) this.terminate(null);
      else this.terminate(new TcpError("ETIMEDOUT", "connection timed out"));
      return;
    }
    this.retransmitCount++;
    if (!synPhase) this.congestion.onTimeout(((this.sendMax - this.sendUnacknowledged) | 0), this.maxSegment);
    this.retransmitTimeout = Math.min(this.retransmitTimeout * 2, this.host.config.maxRetransmitTimeout);
    this.inRecovery = false;
    this.duplicateAcks = 0;
    this.recoverSequence = this.sendMax;
    this.timedAt = -1;
    this.sendNext = this.sendUnacknowledged;
    if (synPhase) this.host.counters.retransmissions++;
    this.retransmitDeadline = now + this.retransmitTimeout;
  }

  /** Zero-window probe (RFC 9293 §3.8.6.1): an ACK with an old sequence number makes the peer
   *  re-announce its window; when the window is open, force out what it allows. */
  private onPersistTimeout(now: number): void {
    if (this.sendWindow > 0) {
      const saved = this.noDelay;
      this.noDelay = true;
      const savedMax = this.maxSendWindow;
      this.maxSendWindow = 0;
      this.output(now);
      this.noDelay = saved;
      this.maxSendWindow = savedMax;
    } else {
      this.transmit(((this.sendUnacknowledged + (-1)) >>> 0), TCP_ACK, null, 0, 0, now);
    }
    this.persistBackoff++;
    if (this.sendUnacknowledged === this.sendMax) this.persistDeadline = now + this.persistInterval();
  }

  /** Keep-alive probe (RFC 9293 §3.8.4): SEG.SEQ = SND.NXT − 1 with no data. */
  private onKeepAliveTimeout(now: number): void {
    if (!this.keepAliveEnabled || this.state !== TcpState.Established) return;
    if (this.keepAliveProbesSent >= this.keepAliveProbes) {
      this.host.counters.timeouts++;
      this.terminate(new TcpError("ETIMEDOUT", "keep-alive timed out"));
      return;
    }
    this.keepAliveProbesSent++;
    this.transmit(((this.sendUnacknowledged + (-1)) >>> 0), TCP_ACK, null, 0, 0, now);
    this.keepAliveDeadline = now + this.keepAliveInterval;
  }

  /**
   * Frees the buffers a closed or TIME-WAIT connection no longer needs (128 KiB with the
   * default sizes): a burst of short connections would otherwise hold them for the whole
   * TIME-WAIT period and exhaust the heap. Unread received data stays until it is read.
   */
  private releaseBuffers(): void {
    this.sendBuffer = null;
    if (this.receiveBuffer !== null && this.receiveBuffer.length === 0) this.receiveBuffer = null;
  }

  /** Moves to CLOSED, reports to the app and releases the connection. */
  terminate(error: TcpError | null): void {
    if (this.state === TcpState.Closed) return;
    this.state = TcpState.Closed;
    this.error = error;
    this.retransmitDeadline = Infinity;
    this.delayedAckDeadline = Infinity;
    this.persistDeadline = Infinity;
    this.keepAliveDeadline = Infinity;
    this.closeDeadline = Infinity;
    this.outOfOrder.clear();
    this.releaseBuffers();
    this.host.release(this);
    const events = this.events;
    this.events = null;
    events?.onClosed(error);
  }

}
