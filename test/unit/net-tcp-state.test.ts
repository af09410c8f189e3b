import assert from "node:assert/strict";
import { test } from "node:test";
import { TcpStack } from "../../kernel/net/socket/tcp.ts";
import { TcpState, type TcpConnection } from "../../kernel/net/socket/tcp-connection.ts";
import type { TcpConfig } from "../../kernel/net/socket/tcp-config.ts";
import { TcpSockets } from "../../kernel/net/socket/tcp-api.ts";
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from "../../kernel/net/wire/tcp.ts";
import { ADDRESS_A, ADDRESS_B, buildSegment, RecordingSender, SECRET, type Segment, type SegmentSpec, SimulatedLink } from "./net-tcp-harness.ts";

const LOCAL = ADDRESS_A;
const REMOTE = ADDRESS_B;
const PORT = 80;
const PEER_PORT = 40000;
const PEER_ISN = 1000;

/** One stack under test, driven segment by segment by a scripted peer. */
class Bench {
  readonly sender = new RecordingSender(LOCAL);
  readonly stack: TcpStack;
  now = 0;
  constructor(config: Partial<TcpConfig> = {}) {
    this.stack = new TcpStack(this.sender, { isnSecret: SECRET, ...config });
  }
  /** Delivers a segment from the peer, then polls; returns what the stack sent. */
  deliver(spec: Partial<SegmentSpec> & { flags: number }, from = REMOTE, fromPort = PEER_PORT): Segment[] {
    const bytes = buildSegment(from, LOCAL, { sourcePort: fromPort, destinationPort: PORT, ...spec });
    this.stack.input(from, LOCAL, bytes, this.now);
    return this.flush();
  }
  /** Runs output that app calls made pending; returns what the stack sent. */
  flush(): Segment[] {
    if (this.stack.pollAt() <= this.now) this.stack.poll(this.now);
    return this.sender.take();
  }
  /** Advances the clock to `time`, polling at every deadline on the way. */
  advance(time: number): Segment[] {
    for (;;) {
      const next = this.stack.pollAt();
      if (next > time) break;
      this.now = Math.max(this.now, next);
      this.stack.poll(this.now);
    }
    this.now = time;
    return this.sender.take();
  }
}

interface Established {
  bench: Bench;
  connection: TcpConnection;
  /** Our ISN + 1: the first data byte we send. */
  localNext: number;
  /** Peer's next sequence number. */
  peerNext: number;
  /** Peer's timestamp clock (increment before use). */
  peerClock: { value: number };
  lastTimestamp: number;
}

/** Passive open with Linux-like SYN options; returns the established connection. */
function establish(config: Partial<TcpConfig> = {}, synOptions: Partial<SegmentSpec> = { maxSegmentSize: 1460, windowScale: 7 }, withTimestamps = true): Established {
  const bench = new Bench(config);
  const listener = bench.stack.listen(PORT, 8);
  const synAck = bench.deliver({ flags: TCP_SYN, sequence: PEER_ISN, window: 64240, ...synOptions, ...(withTimestamps ? { timestamps: [5000, 0] as [number, number] } : {}) });
  assert.equal(synAck.length, 1);
  const s = synAck[0]!;
  assert.equal(s.flags, TCP_SYN | TCP_ACK);
  assert.equal(s.acknowledgment, PEER_ISN + 1);
  const localNext = (s.sequence + 1) >>> 0;
  bench.now += 1;
  const out = bench.deliver({ flags: TCP_ACK, sequence: PEER_ISN + 1, acknowledgment: localNext, window: 502, ...(withTimestamps ? { timestamps: [5001, s.options.timestampValue] as [number, number] } : {}) });
  assert.deepEqual(out, []);
  const connection = listener.accept();
  assert.ok(connection !== null);
  assert.equal(connection.state, TcpState.Established);
  return { bench, connection, localNext, peerNext: PEER_ISN + 1, peerClock: { value: 5001 }, lastTimestamp: s.options.timestampValue };
}

/** A peer segment on an established connection (timestamps filled in). */
function peer(e: Established, spec: Partial<SegmentSpec> & { flags: number }): Segment[] {
  const ts = e.connection.timestampsEnabled ? { timestamps: [++e.peerClock.value, e.lastTimestamp] as [number, number] } : {};
  const out = e.bench.deliver({ sequence: e.peerNext, acknowledgment: e.localNext, window: 502, ...ts, ...spec });
  for (const s of out) if (s.options.hasTimestamps) e.lastTimestamp = s.options.timestampValue;
  return out;
}

const bytes = (n: number, fill = 0x61) => new Uint8Array(n).fill(fill);

test("passive open answers a Linux SYN with MSS, window scale and timestamps, and reaches ESTABLISHED", () => {
  const bench = new Bench();
  bench.stack.listen(PORT);
  bench.now = 10;
  const [synAck] = bench.deliver({ flags: TCP_SYN, sequence: PEER_ISN, window: 64240, maxSegmentSize: 1460, windowScale: 10, timestamps: [777, 0] });
  assert.ok(synAck);
  assert.equal(synAck.options.maxSegmentSize, 1460);
  assert.equal(synAck.options.windowScale, 1, "64 KiB buffer needs shift 1");
  assert.equal(synAck.options.hasTimestamps, true);
  assert.equal(synAck.options.timestampEcho, 777);
  assert.equal(synAck.window, 65535, "SYN windows are never scaled");
  const connection = bench.stack.find(PORT, REMOTE, PEER_PORT)!;
  assert.equal(connection.state, TcpState.SynReceived);
  bench.deliver({ flags: TCP_ACK, sequence: PEER_ISN + 1, acknowledgment: synAck.sequence + 1, window: 63, timestamps: [778, synAck.options.timestampValue] });
  assert.equal(connection.state, TcpState.Established);
  assert.equal(connection.sendWindow, 63 << 10, "window scaled by the peer's shift");
  assert.equal(connection.maxSegment, 1460 - 12, "MSS minus the timestamp option");
});

test("the final ACK of the handshake may carry data, which is delivered", () => {
  const bench = new Bench();
  const listener = bench.stack.listen(PORT);
  const [synAck] = bench.deliver({ flags: TCP_SYN, sequence: PEER_ISN, maxSegmentSize: 1460 });
  bench.deliver({ flags: TCP_ACK | TCP_PSH, sequence: PEER_ISN + 1, acknowledgment: synAck!.sequence + 1, payload: bytes(5) });
  const connection = listener.accept()!;
  assert.equal(connection.readableLength, 5);
});

test("active open: SYN carries our options, SYN-ACK completes, connect() resolves", async () => {
  const bench = new Bench();
  const api = new TcpSockets(bench.stack, () => bench.now);
  const pending = api.connect(REMOTE, 443);
  const [syn] = bench.sender.take();
  assert.ok(syn);
  assert.equal(syn.flags, TCP_SYN);
  assert.equal(syn.options.maxSegmentSize, 1460);
  assert.equal(syn.options.windowScale, 1);
  assert.equal(syn.options.hasTimestamps, true);
  bench.now = 20;
  const synAck = buildSegment(REMOTE, LOCAL, { sourcePort: 443, destinationPort: syn.sourcePort, flags: TCP_SYN | TCP_ACK, sequence: 9000, acknowledgment: syn.sequence + 1, window: 1000, maxSegmentSize: 1200, windowScale: 2, timestamps: [1, syn.options.timestampValue] });
  bench.stack.input(REMOTE, LOCAL, synAck, bench.now);
  const [ack] = bench.sender.take();
  assert.ok(ack);
  assert.equal(ack.flags, TCP_ACK);
  assert.equal(ack.acknowledgment, 9001);
  const socket = await pending;
  assert.equal(socket.state, TcpState.Established);
  assert.equal(socket.connection.sendWindow, 1000, "window of a SYN-ACK is not scaled");
  assert.equal(socket.connection.maxSegment, 1200 - 12);
  assert.equal(socket.connection.smoothedRoundTrip, 20, "RTT sampled from the SYN-ACK's echoed timestamp");
});

test("a RST answering our SYN fails connect() with ECONNREFUSED", async () => {
  const bench = new Bench();
  const api = new TcpSockets(bench.stack, () => bench.now);
  const pending = api.connect(REMOTE, 443);
  const [syn] = bench.sender.take();
  bench.stack.input(REMOTE, LOCAL, buildSegment(REMOTE, LOCAL, { sourcePort: 443, destinationPort: syn!.sourcePort, flags: TCP_RST | TCP_ACK, acknowledgment: syn!.sequence + 1 }), 0);
  await assert.rejects(pending, { code: "ECONNREFUSED" });
  assert.equal(bench.stack.size, 0);
});

test("an unanswered SYN is retransmitted with exponential backoff, then ETIMEDOUT", async () => {
  const bench = new Bench({ maxSynRetransmissions: 3 });
  const api = new TcpSockets(bench.stack, () => bench.now);
  const pending = api.connect(REMOTE, 443);
  const rejected = assert.rejects(pending, { code: "ETIMEDOUT" });
  bench.sender.take();
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const at = bench.stack.pollAt();
    bench.advance(at);
    times.push(at);
  }
  assert.deepEqual(times, [1000, 3000, 7000]);
  bench.advance(bench.stack.pollAt());
  await rejected;
});

test("a segment to a closed port draws an RST (RFC 9293 §3.10.7.1)", () => {
  const bench = new Bench();
  const [rst] = bench.deliver({ flags: TCP_SYN, sequence: 5 });
  assert.equal(rst!.flags, TCP_RST | TCP_ACK);
  assert.equal(rst!.acknowledgment, 6);
  const [rst2] = bench.deliver({ flags: TCP_ACK, sequence: 5, acknowledgment: 1234 });
  assert.equal(rst2!.flags, TCP_RST);
  assert.equal(rst2!.sequence, 1234);
  assert.deepEqual(bench.deliver({ flags: TCP_RST, sequence: 5 }), [], "never answer an RST");
});

test("data in order is delivered; delayed ACK after the timeout, immediate after two full segments", () => {
  const e = establish();
  const { bench, connection } = e;
  const out = peer(e, { flags: TCP_ACK | TCP_PSH, payload: bytes(100) });
  e.peerNext += 100;
  assert.deepEqual(out, [], "a single small segment's ACK is delayed");
  assert.equal(bench.stack.pollAt(), bench.now + 40);
  const [delayed] = bench.advance(bench.now + 40);
  assert.equal(delayed!.acknowledgment, e.peerNext);
  assert.equal(connection.read().length, 100);
  const mss = connection.maxSegment;
  assert.deepEqual(peer(e, { flags: TCP_ACK, payload: bytes(mss) }), []);
  e.peerNext += mss;
  const [ack] = peer(e, { flags: TCP_ACK, payload: bytes(mss) });
  e.peerNext += mss;
  assert.equal(ack!.acknowledgment, e.peerNext, "every second full-sized segment is ACKed at once");
});

test("out-of-order data is held, answered with a duplicate ACK, and delivered once the hole fills", () => {
  const e = establish();
  const [dup] = peer(e, { flags: TCP_ACK, sequence: e.peerNext + 10, payload: bytes(10, 2) });
  assert.equal(dup!.acknowledgment, e.peerNext);
  assert.equal(e.connection.readableLength, 0);
  const [ack] = peer(e, { flags: TCP_ACK, payload: bytes(10, 1) });
  assert.equal(ack!.acknowledgment, e.peerNext + 20, "hole filled: immediate ACK");
  const data = e.connection.read();
  assert.deepEqual([...data], [...bytes(10, 1), ...bytes(10, 2)]);
});

test("an old duplicate segment is ACKed but not delivered twice", () => {
  const e = establish();
  peer(e, { flags: TCP_ACK, payload: bytes(10, 1) });
  const first = e.connection.read();
  assert.equal(first.length, 10);
  const [ack] = peer(e, { flags: TCP_ACK, payload: bytes(10, 1) }); // same sequence again
  assert.equal(ack!.acknowledgment, e.peerNext + 10);
  assert.equal(e.connection.readableLength, 0);
  assert.ok(e.bench.stack.counters.droppedOutOfWindow >= 1);
});

test("PAWS drops a segment whose timestamp went backwards (RFC 7323 §5)", () => {
  const e = establish();
  const [ack] = e.bench.deliver({ flags: TCP_ACK, sequence: e.peerNext, acknowledgment: e.localNext, payload: bytes(10), timestamps: [4000, e.lastTimestamp] });
  assert.equal(ack!.acknowledgment, e.peerNext, "dropped, re-ACKed");
  assert.equal(e.connection.readableLength, 0);
  assert.equal(e.bench.stack.counters.droppedPaws, 1);
});

test("RST with the exact sequence resets; in-window draws a challenge ACK; outside is ignored (RFC 5961 §3)", () => {
  const e = establish();
  const [challenge] = e.bench.deliver({ flags: TCP_RST, sequence: e.peerNext + 100 });
  assert.equal(challenge!.flags, TCP_ACK);
  assert.equal(challenge!.acknowledgment, e.peerNext);
  assert.equal(e.connection.state, TcpState.Established);
  assert.deepEqual(e.bench.deliver({ flags: TCP_RST, sequence: e.peerNext + 10_000_000 }), []);
  assert.equal(e.connection.state, TcpState.Established);
  e.bench.deliver({ flags: TCP_RST, sequence: e.peerNext });
  assert.equal(e.connection.state, TcpState.Closed);
  assert.equal(e.connection.error?.code, "ECONNRESET");
  assert.equal(e.bench.stack.size, 0);
});

test("a SYN on an established connection draws a challenge ACK, and challenge ACKs are rate-limited", () => {
  const e = establish({ challengeAckLimit: 5 });
  const [challenge] = e.bench.deliver({ flags: TCP_SYN, sequence: e.peerNext + 5 });
  assert.equal(challenge!.flags, TCP_ACK);
  assert.equal(e.connection.state, TcpState.Established);
  let sent = 1;
  for (let i = 0; i < 20; i++) sent += e.bench.deliver({ flags: TCP_RST, sequence: e.peerNext + 1 + i }).length;
  assert.equal(sent, 5);
  assert.equal(e.bench.stack.counters.challengeAcksSuppressed, 16);
  e.bench.now += 1000;
  assert.equal(e.bench.deliver({ flags: TCP_RST, sequence: e.peerNext + 1 }).length, 1, "budget refills each second");
});

test("an ACK for data never sent is answered and dropped; a too-old ACK draws a challenge ACK (RFC 5961 §5)", () => {
  const e = establish();
  e.connection.write(bytes(10));
  e.bench.flush();
  const [ack] = peer(e, { flags: TCP_ACK, acknowledgment: e.localNext + 1000, payload: bytes(5) });
  assert.equal(ack!.acknowledgment, e.peerNext, "payload not accepted");
  assert.equal(e.connection.readableLength, 0);
  const [challenge] = peer(e, { flags: TCP_ACK, acknowledgment: e.localNext - 200_000, payload: bytes(5) });
  assert.equal(challenge!.flags, TCP_ACK);
  assert.equal(e.connection.readableLength, 0);
  assert.equal(e.bench.stack.counters.challengeAcks, 1);
});

test("we close first: FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT for 2·MSL, then CLOSED", () => {
  const e = establish({ timeWaitDuration: 5000 });
  e.connection.shutdownSend();
  const [fin] = e.bench.flush();
  assert.equal(fin!.flags, TCP_ACK | TCP_FIN);
  assert.equal(e.connection.state, TcpState.FinWait1);
  peer(e, { flags: TCP_ACK, acknowledgment: e.localNext + 1 });
  e.localNext += 1;
  assert.equal(e.connection.state, TcpState.FinWait2);
  peer(e, { flags: TCP_ACK | TCP_PSH, payload: bytes(3) });
  e.peerNext += 3;
  assert.equal(e.connection.read().length, 3, "half-closed: we still receive");
  const [finAck] = peer(e, { flags: TCP_ACK | TCP_FIN });
  e.peerNext += 1;
  assert.equal(finAck!.acknowledgment, e.peerNext);
  assert.equal(e.connection.state, TcpState.TimeWait);
  assert.ok(e.connection.atEndOfStream);
  e.bench.now += 1000;
  const [reAck] = e.bench.deliver({ flags: TCP_ACK | TCP_FIN, sequence: e.peerNext - 1, acknowledgment: e.localNext, timestamps: [++e.peerClock.value, e.lastTimestamp] });
  assert.equal(reAck!.acknowledgment, e.peerNext, "a retransmitted FIN in TIME-WAIT is re-ACKed");
  assert.equal(e.bench.stack.pollAt(), e.bench.now + 5000, "and restarts the 2·MSL timer");
  e.bench.advance(e.bench.now + 4999);
  assert.equal(e.connection.state, TcpState.TimeWait);
  e.bench.advance(e.bench.now + 1);
  assert.equal(e.connection.state, TcpState.Closed);
  assert.equal(e.bench.stack.size, 0);
});

test("peer closes first: CLOSE-WAIT, our FIN, LAST-ACK, CLOSED", () => {
  const e = establish();
  const [ack] = peer(e, { flags: TCP_ACK | TCP_FIN });
  e.peerNext += 1;
  assert.equal(ack!.acknowledgment, e.peerNext, "FIN is ACKed at once");
  assert.equal(e.connection.state, TcpState.CloseWait);
  assert.ok(e.connection.atEndOfStream);
  e.connection.write(bytes(7));
  e.connection.shutdownSend();
  const [last] = e.bench.flush();
  assert.equal(last!.flags, TCP_ACK | TCP_FIN | TCP_PSH, "remaining data and FIN in one segment");
  assert.equal(last!.payload.length, 7);
  assert.equal(e.connection.state, TcpState.LastAck);
  peer(e, { flags: TCP_ACK, acknowledgment: e.localNext + 8 });
  assert.equal(e.connection.state, TcpState.Closed);
  assert.equal(e.connection.error, null);
});

test("simultaneous open: crossing SYNs reach ESTABLISHED on both sides", async () => {
  const link = new SimulatedLink({ delay: 10 });
  const a = link.a.connect(ADDRESS_B, 6000, 0, 5000);
  const b = link.b.connect(ADDRESS_A, 5000, 0, 6000);
  await link.run(() => a.state === TcpState.Established && b.state === TcpState.Established, 10_000, false);
  a.write(bytes(100, 7));
  await link.run(() => b.readableLength === 100, 10_000, false);
  assert.deepEqual(b.read(), bytes(100, 7));
});

test("simultaneous close: both FINs cross, CLOSING on both sides, then TIME-WAIT and CLOSED", async () => {
  const link = new SimulatedLink({ delay: 10 }, { timeWaitDuration: 1000 });
  const server = link.b.listen(7000);
  const a = link.a.connect(ADDRESS_B, 7000, 0);
  await link.run(() => server.acceptQueue.length === 1, 10_000, false);
  const b = server.accept()!;
  a.shutdownSend();
  b.shutdownSend();
  const seen = new Set<TcpState>();
  await link.run(() => { seen.add(a.state); seen.add(b.state); return a.state === TcpState.TimeWait && b.state === TcpState.TimeWait; }, 10_000, false);
  assert.ok(seen.has(TcpState.Closing));
  await link.run(() => link.a.size === 0 && link.b.size === 0, 10_000, false);
});

test("data is retransmitted at the RTO with exponential backoff, and the connection fails with ETIMEDOUT", () => {
  const e = establish({ maxRetransmissions: 4, minRetransmitTimeout: 200 });
  e.connection.write(bytes(100));
  const [first] = e.bench.flush();
  assert.equal(first!.payload.length, 100);
  const start = e.bench.now;
  const times: number[] = [];
  for (let i = 0; i < 4; i++) {
    const at = e.bench.stack.pollAt();
    const [again] = e.bench.advance(at);
    assert.equal(again!.sequence, first!.sequence);
    times.push(at - start);
  }
  assert.deepEqual(times.map((t, i) => (i === 0 ? t : t - times[i - 1]!)), [200, 400, 800, 1600], "RTO doubles (min 200 ms)");
  e.bench.advance(e.bench.stack.pollAt());
  assert.equal(e.connection.state, TcpState.Closed);
  assert.equal(e.connection.error?.code, "ETIMEDOUT");
});

test("three duplicate ACKs trigger a fast retransmit before the RTO (RFC 5681 §3.2)", () => {
  const e = establish();
  e.connection.noDelay = true;
  const mss = e.connection.maxSegment;
  e.connection.write(bytes(mss * 5));
  const sent = e.bench.flush();
  assert.equal(sent.length, 5);
  for (let i = 0; i < 2; i++) assert.deepEqual(peer(e, { flags: TCP_ACK }), []);
  const [retransmit] = peer(e, { flags: TCP_ACK });
  assert.equal(retransmit!.sequence, e.localNext);
  assert.equal(retransmit!.payload.length, mss);
  assert.equal(e.bench.stack.counters.fastRetransmits, 1);
  // A partial ACK (RFC 6582) retransmits the next hole at once.
  const [next] = peer(e, { flags: TCP_ACK, acknowledgment: e.localNext + mss });
  assert.equal(next!.sequence, e.localNext + mss);
});

test("Nagle holds a small segment while data is unacknowledged; noDelay sends it at once", () => {
  const e = establish();
  e.connection.write(bytes(10));
  assert.equal(e.bench.flush().length, 1);
  e.connection.write(bytes(10));
  assert.deepEqual(e.bench.flush(), [], "Nagle: wait for the ACK");
  const [released] = peer(e, { flags: TCP_ACK, acknowledgment: e.localNext + 10 });
  assert.equal(released!.payload.length, 10);
  e.localNext += 20;
  e.connection.noDelay = true;
  e.connection.write(bytes(10));
  assert.equal(e.bench.flush().length, 1);
  e.connection.write(bytes(10));
  assert.equal(e.bench.flush().length, 1, "noDelay: no waiting");
});

test("window scaling: a larger receive buffer offers a bigger shift, and the peer's shift scales its window", () => {
  const e = establish({ receiveBufferSize: 1 << 20 }, { maxSegmentSize: 1460, windowScale: 7 });
  assert.equal(e.connection.receiveWindowShift, 5);
  assert.equal(e.connection.sendWindowShift, 7);
  const [scaled] = peer(e, { flags: TCP_ACK, window: 100, payload: bytes(3000) });
  assert.equal(e.connection.sendWindow, 100 << 7);
  assert.equal(scaled!.acknowledgment, e.peerNext + 3000, "more than two full segments: ACK at once");
  assert.equal(scaled!.window, ((1 << 20) - 3000) >> 5);
  const noScale = establish({}, { maxSegmentSize: 1460 });
  assert.equal(noScale.connection.receiveWindowShift, 0, "no scaling unless both SYNs carry the option");
  assert.equal(noScale.connection.sendWindowShift, 0);
});

test("zero window: data waits, the persist timer probes with backoff, and a window update resumes sending", () => {
  const e = establish();
  peer(e, { flags: TCP_ACK, window: 0 });
  e.connection.write(bytes(500));
  assert.deepEqual(e.bench.flush(), [], "nothing fits in a zero window");
  const armedAt = e.bench.now;
  const first = e.bench.stack.pollAt();
  const [probe] = e.bench.advance(first);
  assert.equal(probe!.payload.length, 0);
  assert.equal(probe!.sequence, (e.localNext - 1) >>> 0, "probe uses an old sequence number to force an ACK");
  const second = e.bench.stack.pollAt();
  assert.equal(second - first, 2 * (first - armedAt), "the persist interval doubles");
  const [data] = peer(e, { flags: TCP_ACK, window: 100 });
  assert.equal(data!.payload.length, 500);
});

test("a zero receive window stops the peer; reading reopens it with a window update", () => {
  const e = establish({ receiveBufferSize: 4096 });
  const mss = e.connection.maxSegment;
  let offered = 0;
  for (let sent = 0; sent < 4096; sent += mss) {
    const length = Math.min(mss, 4096 - sent);
    peer(e, { flags: TCP_ACK, payload: bytes(length) });
    e.peerNext += length;
    offered += length;
  }
  const [ack] = e.bench.advance(e.bench.now + 50);
  assert.equal(ack!.window, 0);
  const [rejected] = peer(e, { flags: TCP_ACK, payload: bytes(10) });
  assert.equal(rejected!.window, 0);
  assert.equal(rejected!.acknowledgment, e.peerNext, "data beyond a zero window is not accepted");
  e.connection.read(100);
  assert.deepEqual(e.bench.flush(), [], "receiver SWS avoidance: no tiny window update");
  e.connection.read();
  const [update] = e.bench.flush();
  assert.equal(update!.window, 4096);
  assert.equal(offered, 4096);
});

test("keep-alive probes an idle connection and times it out when the peer is gone", () => {
  const e = establish();
  e.connection.setKeepAlive(true, e.bench.now, 1000, 500, 3);
  const start = e.bench.now;
  const [probe] = e.bench.advance(start + 1000);
  assert.equal(probe!.sequence, (e.localNext - 1) >>> 0);
  peer(e, { flags: TCP_ACK });
  assert.equal(e.connection.deadline, e.bench.now + 1000, "an answer restarts the idle timer");
  // pollAt() is a lower bound (the old probe deadline here) until a poll passes it and rescans
  assert.ok(e.bench.stack.pollAt() <= e.bench.now + 1000);
  const probes = e.bench.advance(e.bench.now + 1000 + 500 * 2);
  assert.equal(probes.length, 3);
  assert.equal(e.connection.state, TcpState.Established);
  e.bench.advance(e.bench.now + 500);
  assert.equal(e.connection.state, TcpState.Closed);
  assert.equal(e.connection.error?.code, "ETIMEDOUT");
});

test("listen backlog: a full accept queue drops new SYNs and parks completing handshakes", () => {
  const bench = new Bench();
  const listener = bench.stack.listen(PORT, 1);
  const handshake = (port: number) => {
    const out = bench.deliver({ flags: TCP_SYN, sequence: 100, maxSegmentSize: 1460 }, REMOTE, port);
    if (out.length === 0) return false;
    bench.deliver({ flags: TCP_ACK, sequence: 101, acknowledgment: out[0]!.sequence + 1 }, REMOTE, port);
    return true;
  };
  assert.ok(handshake(1001));
  assert.equal(listener.acceptQueue.length, 1);
  assert.equal(handshake(1002), false, "SYN dropped while the accept queue is full");
  assert.equal(bench.stack.counters.droppedListenOverflow, 1);
  assert.ok(listener.accept());
  assert.ok(handshake(1003));
  assert.equal(listener.acceptQueue.length, 1);
});

test("SYN flood: the SYN queue stays bounded, the oldest half-open entries are evicted, real clients still get in", () => {
  const bench = new Bench({ synQueueLimit: 64 });
  const listener = bench.stack.listen(PORT, 16);
  for (let i = 0; i < 5000; i++) {
    const source = (0xc0a80000 + i) >>> 0; // spoofed sources
    bench.stack.input(source, LOCAL, buildSegment(source, LOCAL, { sourcePort: 1024 + (i % 60000), destinationPort: PORT, flags: TCP_SYN, sequence: i * 7 }), bench.now);
  }
  bench.sender.take();
  assert.equal(listener.synQueue.length, 64);
  assert.equal(bench.stack.size, 64);
  assert.equal(bench.stack.counters.synQueueEvictions, 5000 - 64);
  const [synAck] = bench.deliver({ flags: TCP_SYN, sequence: 1, maxSegmentSize: 1460 });
  bench.deliver({ flags: TCP_ACK, sequence: 2, acknowledgment: synAck!.sequence + 1 });
  assert.ok(listener.accept(), "a legitimate client completes its handshake");
  // Half-open entries die after their SYN-ACK retransmissions.
  bench.advance(200_000);
  assert.equal(listener.synQueue.length, 0);
  assert.equal(bench.stack.size, 1);
});

test("ISNs differ per 4-tuple and advance with the clock (RFC 6528)", () => {
  const bench = new Bench();
  const c1 = bench.stack.connect(REMOTE, 1, 0, 3000);
  const c2 = bench.stack.connect(REMOTE, 2, 0, 3000);
  assert.notEqual(c1.initialSendSequence, c2.initialSendSequence);
  c1.abort(0);
  const c3 = bench.stack.connect(REMOTE, 1, 1000, 3000);
  assert.equal((c3.initialSendSequence - c1.initialSendSequence) >>> 0, 250_000, "4 µs ticks");
});

test("abort() sends an RST with our current sequence number and forgets the connection", () => {
  const e = establish();
  e.connection.abort(e.bench.now);
  const [rst] = e.bench.sender.take();
  assert.equal(rst!.flags & TCP_RST, TCP_RST);
  assert.equal(rst!.sequence, e.localNext);
  assert.equal(e.bench.stack.size, 0);
});
