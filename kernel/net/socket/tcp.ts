/**
 * The TCP layer of one network stack: demultiplexes segments to connections and listeners,
 * answers segments for no connection with RST (RFC 9293 §3.10.7.1), runs listen queues,
 * and drives every connection's timers.
 *
 * Driving it (smoltcp style, no timers inside): the IP layer calls `input()` for each TCP
 * packet; the event loop calls `poll(now)` whenever `now >= pollAt()` (app writes, reads
 * and closes make pollAt() return 0, so output is batched into the next poll). Time is
 * milliseconds, monotonic. App-facing promises live in tcp-api.ts.
 *
 * Decisions (see TcpConfig for the numbers):
 * - SYN-flood resistance: a bounded SYN queue per listener (synQueueLimit, default 128)
 *   with oldest-first eviction, not SYN cookies. Half-open entries hold no buffers (they
 *   are allocated when the handshake completes), so a full queue costs ~128 small objects.
 *   A full accept queue (backlog) drops new SYNs and ignores completing ACKs, as Linux does.
 * - TIME-WAIT lasts timeWaitDuration = 2·MSL = 30 s by default (RFC 9293 says MSL = 2 min;
 *   a unikernel with few, mostly passive connections reuses 4-tuples rarely). A new SYN
 *   with a higher sequence number reopens a TIME-WAIT 4-tuple (RFC 6191 without timestamps).
 * - After a retransmission timeout the sender goes back to SND.UNA (go-back-N); pure ACKs
 *   carry SND.MAX so they stay acceptable to the peer. SACK is not used (SACK-permitted is
 *   never offered; received SACK blocks are ignored).
 * - Zero-window probes and keep-alives are ACKs with sequence SND.UNA−1 (as Linux does):
 *   the peer must answer them with its current window, and no data byte is committed.
 * - ISNs: RFC 6528 with HalfSipHash-2-4 keyed by the injected secret, plus a 4-µs clock.
 * - pollAt() scans all connections: O(n) per call, fine for hundreds of connections.
 */
import type { IpSender, TransportInput } from "../ip.ts";
import { PROTOCOL_TCP } from "../ip.ts";
import {
  createTcpOptions, fillTcpChecksum, TCP_ACK, TCP_FIN, TCP_HEADER_LENGTH, TCP_RST, TCP_SYN,
  parseTcpOptions, type TcpHeaderFields, writeTcpHeader,
} from "../wire/tcp.ts";
import { sumWordsFrom } from "../wire/checksum.ts";
import { createTcpCounters, DEFAULT_TCP_CONFIG, type TcpConfig, type TcpCounters, TcpError } from "./tcp-config.ts";
import { TcpConnection, type TcpConnectionHost, TcpState } from "./tcp-connection.ts";
import { TupleHasher } from "./tcp-isn.ts";
// Sequence arithmetic modulo 2^32 (tcp-seq.ts) is written out inline in this file — a < b is
// ((a - b) | 0) < 0, a + n is ((a + n) >>> 0), a − b is ((a - b) | 0) — because a function call
// per comparison is a large share of a segment's cost in the interpreter.

/** A listening port: its SYN queue (half-open) and accept queue (established, not accepted). */
export class TcpListener {
  /** Established connections waiting for accept(); at most `backlog`. */
  readonly acceptQueue: TcpConnection[] = [];
  /** Half-open connections in SYN-RECEIVED, oldest first. */
  readonly synQueue: TcpConnection[] = [];
  /** Called (inside input()) when acceptQueue gains a connection. */
  onAcceptable: (() => void) | null = null;
  closed = false;

  constructor(readonly port: number, readonly backlog: number) {}

  /** Takes the oldest established connection, or null. */
  accept(): TcpConnection | null {
    return this.acceptQueue.shift() ?? null;
  }
}

/** TCP for one interface: implements TransportInput for the IP layer. */
export class TcpStack implements TransportInput, TcpConnectionHost {
  readonly config: TcpConfig;
  readonly counters: TcpCounters = createTcpCounters();
  /** Connections by local port, then by remote address·65536 + remote port. */
  private readonly connections = new Map<number, Map<number, TcpConnection>>();
  private readonly listeners = new Map<number, TcpListener>();
  /** The last local port input() looked up and its entry in `connections` (register() and release() forget it). */
  private lookupPort = -1;
  private lookupByPort: Map<number, TcpConnection> | undefined = undefined;
  /**
   * Connections that asked for output (markDirty) since the last poll(), each once while its
   * `outputQueued` is set. An array and a flag rather than a Set: no iterator per pass and no
   * native call per add, delete or size; output() clears the flag, so a connection whose
   * output already ran (at the end of input(), which sends a response written inside it) is
   * skipped instead of running output() again for nothing.
   */
  private readonly dirty: TcpConnection[] = [];
  /**
   * A lower bound of every connection's deadline (never later than the earliest), exact after
   * a rescan; deadlineStale asks for a rescan (see pollAt).
   */
  private earliestDeadline = Infinity;
  private deadlineStale = false;
  private readonly hasher: TupleHasher;
  private readonly options = createTcpOptions();
  private readonly resetHeader: TcpHeaderFields = {
    sourcePort: 0, destinationPort: 0, sequence: 0, acknowledgment: 0, flags: 0, window: 0,
    maxSegmentSize: -1, windowScale: -1, sackPermitted: false, hasTimestamps: false, timestampValue: 0, timestampEcho: 0,
  };
  private resetSource = 0;
  private resetDestination = 0;
  private readonly fillReset = (buffer: Uint8Array, offset: number): void => {
    writeTcpHeader(buffer, this.resetHeader, offset);
    fillTcpChecksum(this.resetSource, this.resetDestination, buffer.subarray(offset, offset + TCP_HEADER_LENGTH));
  };
  private challengeAckSecond = -1;
  private challengeAcksThisSecond = 0;
  private connectionCount = 0;
  private nextEphemeral: number;

  constructor(readonly ip: IpSender, config: Partial<TcpConfig> & { isnSecret: Uint8Array }) {
    this.config = { ...DEFAULT_TCP_CONFIG, ...config };
    this.hasher = new TupleHasher(this.config.isnSecret);
    this.nextEphemeral = this.hasher.hash(0, 0, 0, 0, 1) % this.config.ephemeralCount;
  }

  /** Number of live connections (all states but LISTEN). */
  get size(): number { return this.connectionCount; }

  // ─── App-side operations ─────────────────────────────────────────────────────────────

  /** Opens a listening port (RFC 9293 §3.10.1 passive OPEN). Throws EADDRINUSE. */
  listen(port: number, backlog = 128): TcpListener {
    if (this.listeners.has(port)) throw new TcpError("EADDRINUSE", `port ${port} is already listening`);
    const listener = new TcpListener(port, Math.max(1, backlog));
    this.listeners.set(port, listener);
    return listener;
  }

  /** Stops listening: half-open connections are dropped, unaccepted ones reset. */
  closeListener(listener: TcpListener, now: number): void {
    if (listener.closed) return;
    listener.closed = true;
    this.listeners.delete(listener.port);
    for (const connection of listener.synQueue.splice(0)) connection.terminate(null);
    for (const connection of listener.acceptQueue.splice(0)) connection.abort(now);
  }

  /** Active open to remoteAddress:remotePort from an ephemeral port; the SYN leaves now. */
  connect(remoteAddress: number, remotePort: number, now: number, localPort = 0): TcpConnection {
    const localAddress = this.ip.address;
    const remoteKey = remoteAddress * 65536 + remotePort;
    if (localPort === 0) {
      const { ephemeralFirst, ephemeralCount } = this.config;
      for (let tries = 0; tries < ephemeralCount; tries++) {
        const candidate = ephemeralFirst + (this.nextEphemeral++ % ephemeralCount);
        if (!this.listeners.has(candidate) && !(this.connections.get(candidate)?.has(remoteKey) ?? false)) {
          localPort = candidate;
          break;
        }
      }
      if (localPort === 0) throw new TcpError("EADDRNOTAVAIL", "no free ephemeral port");
    } else if (this.connections.get(localPort)?.has(remoteKey) ?? false) {
      throw new TcpError("EADDRINUSE", `port ${localPort} is in use for that peer`);
    }
    const connection = new TcpConnection(this, localAddress, localPort, remoteAddress, remotePort, false);
    this.register(connection);
    this.deadlineStale = true;
    connection.openActive(
      this.hasher.initialSequence(localAddress, localPort, remoteAddress, remotePort, now),
      this.hasher.hash(localAddress, localPort, remoteAddress, remotePort, 2),
      now,
    );
    return connection;
  }

  /** Finds the connection for a 4-tuple (tests and diagnostics). */
  find(localPort: number, remoteAddress: number, remotePort: number): TcpConnection | undefined {
    return this.connections.get(localPort)?.get(remoteAddress * 65536 + remotePort);
  }

  // ─── Driving ─────────────────────────────────────────────────────────────────────────

  /**
   * The earliest time poll() has work: 0 when output is pending, Infinity when idle. The
   * earliest connection deadline is recomputed only after something may have moved a timer
   * (a segment in, output, a timer run, an app call): event-loop passes where nothing
   * happened cost O(1) instead of a walk over every connection.
   */
  pollAt(): number {
    if (this.dirty.length !== 0) return 0;
    if (this.deadlineStale) this.rescanDeadlines();
    return this.earliestDeadline;
  }

  /** Runs pending output and every expired timer. */
  poll(now: number): void {
    const dirty = this.dirty;
    if (dirty.length !== 0) {
      // By index: output may mark connections again, which appends them (visited in this loop).
      for (let i = 0; i < dirty.length; i++) {
        const connection = dirty[i]!;
        if (!connection.outputQueued) continue; // its output ran since it was marked
        connection.output(now); // clears outputQueued
        this.noteDeadline(connection);
      }
      dirty.length = 0;
    }
    if (this.deadlineStale) this.rescanDeadlines();
    if (now < this.earliestDeadline) return; // no timer is due
    for (const byPort of this.connections.values()) {
      for (const connection of byPort.values()) {
        if (connection.deadline <= now) connection.poll(now);
      }
    }
    this.rescanDeadlines();
  }

  /**
   * After an event that may have moved `connection`'s timers: lowers the bound to its deadline.
   * A timer that moved later leaves the bound early, which only costs one walk over the
   * connections when it passes (poll() then rescans) — instead of a walk after every event.
   */
  private noteDeadline(connection: TcpConnection): void {
    const deadline = connection.deadline;
    if (deadline < this.earliestDeadline) this.earliestDeadline = deadline;
  }

  /** Recomputes the earliest deadline of all connections. */
  private rescanDeadlines(): void {
    let earliest = Infinity;
    for (const byPort of this.connections.values()) {
      for (const connection of byPort.values()) {
        const deadline = connection.deadline;
        if (deadline < earliest) earliest = deadline;
      }
    }
    this.earliestDeadline = earliest;
    this.deadlineStale = false;
  }

  /**
   * TransportInput: one TCP segment from the IP layer (view valid only during the call).
   * `checksumVerified`: the device already checked the checksum (virtio-net
   * VIRTIO_NET_HDR_F_DATA_VALID), so it is not summed again.
   */
  input(source: number, destination: number, segment: Uint8Array, now: number, checksumVerified = false): void {
    this.inputAt(source, destination, segment, 0, segment.length, now, checksumVerified);
  }

  /** TransportInput.inputAt: the segment is packet[start, end) (the IP layer makes no view of it). */
  inputAt(source: number, destination: number, packet: Uint8Array, start: number, end: number, now: number, checksumVerified: boolean): void {
    const counters = this.counters;
    counters.segmentsReceived++;
    // The fixed header's fields are read here rather than through wire/tcp.ts's accessors
    // (tcpHeaderValid, tcpFlags, …): a call per field is a large part of a segment's cost.
    const s = start;
    const length = end - start;
    const headerLength = length >= TCP_HEADER_LENGTH ? (packet[s + 12]! >> 4) * 4 : 0;
    if (headerLength < TCP_HEADER_LENGTH || headerLength > length) {
      counters.droppedMalformed++;
      return;
    }
    if (!checksumVerified) {
      const pseudo = (source >>> 16) + (source & 0xffff) + (destination >>> 16) + (destination & 0xffff) + PROTOCOL_TCP + length;
      // finishChecksum(sum) === 0, written out: two folds suffice below 2^32 (any IPv4 packet)
      let sum = sumWordsFrom(packet, start, end, pseudo);
      sum = (sum & 0xffff) + (sum >>> 16);
      if ((sum & 0xffff) + (sum >>> 16) !== 0xffff) {
        counters.droppedChecksum++;
        return;
      }
    }
    const flags = packet[s + 13]!;
    // The options record: SYN-only options (MSS, window scale, SACK-permitted) are read only
    // for a SYN (negotiateOptions() via openPassive() and inputSynSent()), so the two usual
    // layouts below reset them only for a SYN — three stores less per segment.
    const options = this.options;
    if (headerLength === TCP_HEADER_LENGTH) {
      if ((flags & TCP_SYN) !== 0) {
        options.maxSegmentSize = -1;
        options.windowScale = -1;
        options.sackPermitted = false;
      }
      options.hasTimestamps = false;
    } else if (headerLength === TCP_HEADER_LENGTH + 12 && packet[s + 20] === 1 && packet[s + 21] === 1 && packet[s + 22] === 8 && packet[s + 23] === 10) {
      // NOP NOP timestamps, the layout of every segment after the handshake when timestamps
      // are on (RFC 7323 Appendix A): read in place rather than through parseTcpOptions.
      if ((flags & TCP_SYN) !== 0) {
        options.maxSegmentSize = -1;
        options.windowScale = -1;
        options.sackPermitted = false;
      }
      options.hasTimestamps = true;
      options.timestampValue = ((packet[s + 24]! << 24) | (packet[s + 25]! << 16) | (packet[s + 26]! << 8) | packet[s + 27]!) >>> 0;
      options.timestampEcho = ((packet[s + 28]! << 24) | (packet[s + 29]! << 16) | (packet[s + 30]! << 8) | packet[s + 31]!) >>> 0;
    } else if (!parseTcpOptions(packet, options, start)) {
      counters.droppedMalformed++;
      return;
    }
    const sourcePort = (packet[s]! << 8) | packet[s + 1]!;
    const destinationPort = (packet[s + 2]! << 8) | packet[s + 3]!;
    if (sourcePort === 0 || destinationPort === 0 || (flags & TCP_SYN && flags & TCP_FIN) || (flags & TCP_SYN && flags & TCP_RST)) {
      counters.droppedMalformed++;
      return;
    }
    const sequence = ((packet[s + 4]! << 24) | (packet[s + 5]! << 16) | (packet[s + 6]! << 8) | packet[s + 7]!) >>> 0;
    const acknowledgment = ((packet[s + 8]! << 24) | (packet[s + 9]! << 16) | (packet[s + 10]! << 8) | packet[s + 11]!) >>> 0;
    const window = (packet[s + 14]! << 8) | packet[s + 15]!;

    // The last port's connection map is kept: a server's segments are mostly for one port.
    let byPort = this.lookupByPort;
    if (destinationPort !== this.lookupPort) {
      byPort = this.connections.get(destinationPort);
      this.lookupPort = destinationPort;
      this.lookupByPort = byPort;
    }
    let connection = byPort?.get(source * 65536 + sourcePort);
    if (connection !== undefined && connection.state === TcpState.TimeWait && (flags & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN &&
        this.listeners.has(destinationPort) && (((sequence - connection.receiveNext) | 0) > 0)) {
      // RFC 9293 §3.10.7.4 / RFC 6191: a new SYN beyond the old connection may reopen it.
      connection.terminate(null);
      connection = undefined;
    }
    if (connection !== undefined) {
      connection.input(sequence, acknowledgment, flags, window, options, packet, start + headerLength, end, now);
      this.noteDeadline(connection); // whatever this segment did may have moved its timers
      return;
    }
    const listener = this.listeners.get(destinationPort);
    if (listener !== undefined && (flags & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN) {
      this.inputListen(listener, source, destination, sourcePort, sequence, window, now);
      return;
    }
    // §3.10.7.1: no connection. An RST is dropped; anything else draws an RST.
    counters.droppedNoConnection++;
    if (flags & TCP_RST) return;
    const segmentLength = length - headerLength + (flags & TCP_SYN ? 1 : 0) + (flags & TCP_FIN ? 1 : 0);
    if (flags & TCP_ACK) {
      this.sendReset(destination, destinationPort, source, sourcePort, acknowledgment, 0, TCP_RST);
    } else {
      this.sendReset(destination, destinationPort, source, sourcePort, 0, ((sequence + segmentLength) >>> 0), TCP_RST | TCP_ACK);
    }
  }

  /** §3.10.7.2: a SYN for a listener. */
  private inputListen(listener: TcpListener, source: number, destination: number, sourcePort: number, sequence: number, window: number, now: number): void {
    if (listener.acceptQueue.length >= listener.backlog) {
      // Accept queue full: drop the SYN silently; the client retries (Linux does the same).
      this.counters.droppedListenOverflow++;
      return;
    }
    if (listener.synQueue.length >= this.config.synQueueLimit) {
      // SYN flood: evict the oldest half-open entry. Real clients answer within one RTT,
      // flood entries never do, so the oldest is the likeliest forgery.
      const oldest = listener.synQueue.shift()!;
      this.counters.synQueueEvictions++;
      oldest.terminate(null);
    }
    const connection = new TcpConnection(this, destination, listener.port, source, sourcePort, true);
    this.register(connection);
    listener.synQueue.push(connection);
    connection.openPassive(
      this.hasher.initialSequence(destination, listener.port, source, sourcePort, now),
      this.hasher.hash(destination, listener.port, source, sourcePort, 2),
      sequence, window, this.options, now,
    );
    this.noteDeadline(connection);
  }

  private sendReset(source: number, sourcePort: number, destination: number, destinationPort: number, sequence: number, acknowledgment: number, flags: number): void {
    const h = this.resetHeader;
    h.sourcePort = sourcePort;
    h.destinationPort = destinationPort;
    h.sequence = sequence;
    h.acknowledgment = acknowledgment;
    h.flags = flags;
    this.resetSource = source;
    this.resetDestination = destination;
    this.counters.resetsSent++;
    if (this.ip.send(destination, PROTOCOL_TCP, 20, this.fillReset)) this.counters.segmentsSent++;
    else this.counters.droppedSendFailed++;
  }

  private register(connection: TcpConnection): void {
    let byPort = this.connections.get(connection.localPort);
    if (byPort === undefined) {
      byPort = new Map();
      this.connections.set(connection.localPort, byPort);
      this.lookupPort = -1;
    }
    byPort.set(connection.remoteAddress * 65536 + connection.remotePort, connection);
    this.connectionCount++;
  }

  // ─── TcpConnectionHost ───────────────────────────────────────────────────────────────

  /** RFC 5961 §7: at most `challengeAckLimit` challenge ACKs per second, stack-wide. */
  allowChallengeAck(now: number): boolean {
    const second = Math.floor(now / 1000);
    if (second !== this.challengeAckSecond) {
      this.challengeAckSecond = second;
      this.challengeAcksThisSecond = 0;
    }
    if (this.challengeAcksThisSecond >= this.config.challengeAckLimit) return false;
    this.challengeAcksThisSecond++;
    return true;
  }

  /**
   * Queues `connection` for output at the next poll(), which also notes its deadline then
   * (queuing output moves no timer, so there is nothing to note here).
   */
  markDirty(connection: TcpConnection): void {
    if (connection.outputQueued) return;
    connection.outputQueued = true;
    this.dirty.push(connection);
  }

  timersChanged(connection?: TcpConnection): void {
    if (connection !== undefined) this.noteDeadline(connection);
    else this.deadlineStale = true;
  }

  completeHandshake(connection: TcpConnection): boolean {
    const listener = this.listeners.get(connection.localPort);
    if (listener === undefined) return true; // listener gone: the connection is simply orphaned
    const index = listener.synQueue.indexOf(connection);
    if (index < 0) return true;
    if (listener.acceptQueue.length >= listener.backlog) return false;
    listener.synQueue.splice(index, 1);
    listener.acceptQueue.push(connection);
    listener.onAcceptable?.();
    return true;
  }

  release(connection: TcpConnection): void {
    const byPort = this.connections.get(connection.localPort);
    const key = connection.remoteAddress * 65536 + connection.remotePort;
    if (byPort?.get(key) === connection) {
      byPort.delete(key);
      if (byPort.size === 0) {
        this.connections.delete(connection.localPort);
        this.lookupPort = -1;
      }
      this.connectionCount--;
    }
    connection.outputQueued = false; // (poll() skips its entry in dirty)
    this.deadlineStale = true; // its timers no longer count
    if (connection.passive) {
      const listener = this.listeners.get(connection.localPort);
      if (listener !== undefined) {
        const inSyn = listener.synQueue.indexOf(connection);
        if (inSyn >= 0) listener.synQueue.splice(inSyn, 1);
        const inAccept = listener.acceptQueue.indexOf(connection);
        if (inAccept >= 0) listener.acceptQueue.splice(inAccept, 1);
      }
    }
  }
}
