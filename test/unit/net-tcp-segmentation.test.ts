// TCP with a device that cuts large segments (TCP segmentation offload, virtio-net HOST_TSO4):
// what the connection hands sendSegmented(), and whole transfers through a lossy link whose
// devices cut them (test/unit/net-tcp-harness.ts cutSegment).
import assert from "node:assert/strict";
import { test } from "node:test";
import { TcpSockets, type TcpSocket } from "../../kernel/net/socket/tcp-api.ts";
import { TcpStack } from "../../kernel/net/socket/tcp.ts";
import { TcpState, type TcpConnection } from "../../kernel/net/socket/tcp-connection.ts";
import { TCP_ACK, TCP_FIN, TCP_SYN } from "../../kernel/net/wire/tcp.ts";
import { ADDRESS_A, ADDRESS_B, buildSegment, randomBytes, readAll, SECRET, SegmentingSender, sha256, SimulatedLink, type Segment } from "./net-tcp-harness.ts";

const PORT = 80;
const PEER_PORT = 40000;
const PEER_ISN = 1000;

interface Setup {
  sender: SegmentingSender;
  stack: TcpStack;
  connection: TcpConnection;
  /** Deliver an ACK of everything up to `acknowledgment` (peer timestamps filled in). */
  ack(acknowledgment: number): Segment[];
  now: { value: number };
  first: number;
}

/** A passive open with a Linux-like peer (MSS 1460, window scale 7, timestamps), and a large window. */
function setup(limit = 65_000): Setup {
  const sender = new SegmentingSender(ADDRESS_A, limit);
  const stack = new TcpStack(sender, { isnSecret: SECRET });
  const now = { value: 0 };
  const listener = stack.listen(PORT, 8);
  const deliver = (spec: Parameters<typeof buildSegment>[2]) => {
    stack.input(ADDRESS_B, ADDRESS_A, buildSegment(ADDRESS_B, ADDRESS_A, spec), now.value);
    if (stack.pollAt() <= now.value) stack.poll(now.value);
    return sender.take();
  };
  const [synAck] = deliver({ sourcePort: PEER_PORT, destinationPort: PORT, flags: TCP_SYN, sequence: PEER_ISN, window: 64240, maxSegmentSize: 1460, windowScale: 7, timestamps: [5000, 0] });
  let echo = synAck!.options.timestampValue, clock = 5000;
  const first = (synAck!.sequence + 1) >>> 0;
  const ack = (acknowledgment: number): Segment[] => {
    now.value += 1;
    const out = deliver({ sourcePort: PEER_PORT, destinationPort: PORT, flags: TCP_ACK, sequence: PEER_ISN + 1, acknowledgment, window: 8192, timestamps: [++clock, echo] });
    for (const s of out) if (s.options.hasTimestamps) echo = s.options.timestampValue;
    return out;
  };
  ack(first);
  const connection = listener.accept()!;
  assert.equal(connection.state, TcpState.Established);
  return { sender, stack, connection, ack, now, first };
}

const flush = (s: Setup) => {
  if (s.stack.pollAt() <= s.now.value) s.stack.poll(s.now.value);
  return s.sender.take();
};

test("new data for several segments leaves as large segments of whole MSS-sized pieces; the short tail waits for Nagle", () => {
  const s = setup();
  const mss = s.connection.maxSegment;
  assert.equal(mss, 1460 - 12);
  const data = new Uint8Array(20 * mss + 100).map((_, i) => (i * 7) & 0xff);
  assert.equal(s.connection.write(data), data.length);
  const received = new Uint8Array(data.length);
  let highest = s.first;
  const take = (segments: Segment[]) => {
    for (const seg of segments) {
      received.set(seg.payload, ((seg.sequence - s.first) >>> 0));
      highest = Math.max(highest, (seg.sequence + seg.payload.length) >>> 0);
    }
  };
  const firstFlight = flush(s);
  take(firstFlight);
  assert.ok(s.sender.large.length >= 1, "a large segment in the first flight");
  for (const { segment, segmentSize, pieces } of s.sender.large) {
    assert.equal(segmentSize, mss);
    assert.ok(segment.payload.length > mss && segment.payload.length % mss === 0, `${segment.payload.length} bytes: whole segments only`);
    assert.equal(pieces.length, segment.payload.length / mss);
    assert.equal(segment.flags & TCP_FIN, 0);
  }
  // ACK what was sent until all of it is; the 100-byte tail goes only when nothing is in flight.
  for (let rounds = 0; highest !== ((s.first + data.length) >>> 0); rounds++) {
    assert.ok(rounds < 50, "the transfer stalled");
    const out = s.ack(highest);
    for (const seg of out) {
      if (seg.payload.length < mss) assert.equal(highest, ((seg.sequence) >>> 0), "the tail follows everything else");
    }
    take(out);
  }
  assert.deepEqual(received, data);
  s.connection.close();
  const fin = flush(s).concat(s.ack(highest));
  assert.ok(fin.some((seg) => (seg.flags & TCP_FIN) !== 0 && seg.payload.length <= mss), "the FIN rides on an ordinary segment");
  assert.ok(s.sender.large.every(({ segment }) => (segment.flags & TCP_FIN) === 0));
});

test("the FIN never rides on a large segment: the last whole segment carries it the usual way", () => {
  const s = setup();
  const mss = s.connection.maxSegment;
  s.connection.write(new Uint8Array(6 * mss));
  s.connection.close();
  const out = flush(s);
  assert.deepEqual(out.map((seg) => [seg.payload.length, (seg.flags & TCP_FIN) !== 0]), [[5 * mss, false], [mss, true]]);
  assert.equal(s.sender.large.length, 1);
});

test("retransmissions are ordinary segments, never large ones", () => {
  const s = setup();
  const mss = s.connection.maxSegment;
  s.connection.write(new Uint8Array(8 * mss));
  flush(s);
  assert.equal(s.sender.large.length, 1);
  const sentLarge = s.sender.large.length;
  s.now.value = s.stack.pollAt();
  const [again] = flush(s);
  assert.ok(again, "RTO retransmission");
  assert.equal(again.sequence, s.first);
  assert.ok(again.payload.length <= mss);
  assert.equal(s.sender.large.length, sentLarge);
});

test("no large segments while the device offers none to this peer (the link address unknown)", () => {
  const s = setup();
  s.sender.refuse = false;
  const limit = s.sender.segmentedLimit;
  s.sender.segmentedLimit = () => 0;
  const mss = s.connection.maxSegment;
  s.connection.write(new Uint8Array(6 * mss));
  const out = flush(s);
  assert.equal(s.sender.large.length, 0);
  assert.ok(out.length >= 2 && out.every((seg) => seg.payload.length <= mss));
  s.sender.segmentedLimit = limit;
});

for (const [name, faults] of [
  ["a clean link", { delay: 2 }],
  ["5% loss, reordering and duplication", { loss: 0.05, reorder: 0.05, duplicate: 0.02, delay: 3, seed: 7 }],
] as const) {
  test(`through ${name}, 2 MB each way arrive byte-exact when both devices cut large segments`, async () => {
    const link = new SimulatedLink(faults, {}, {}, 65_000);
    const a = new TcpSockets(link.a, () => link.now), b = new TcpSockets(link.b, () => link.now);
    const up = randomBytes(2_000_000, 1), down = randomBytes(2_000_000, 2);
    const server = b.listen(8080, { backlog: 1 });
    let done = 0;
    let atServer: Uint8Array | null = null, atClient: Uint8Array | null = null;
    const exchange = async (socket: TcpSocket, data: Uint8Array) => {
      const [got] = await Promise.all([readAll(socket), (async () => {
        for (let at = 0; at < data.length; at += 100_000) await socket.write(data.subarray(at, at + 100_000));
        socket.end();
      })()]);
      done++;
      return got;
    };
    const serverSide = server.accept().then(async (socket) => (atServer = await exchange(socket, down)));
    const clientSide = a.connect(ADDRESS_B, 8080).then(async (socket) => (atClient = await exchange(socket, up)));
    await link.run(() => done === 2);
    await Promise.all([serverSide, clientSide]);
    assert.equal(sha256(atServer!), sha256(up));
    assert.equal(sha256(atClient!), sha256(down));
    assert.ok(link.segmentedSends > 20, `${link.segmentedSends} large segments`);
  });
}
