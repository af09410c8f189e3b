import assert from "node:assert/strict";
import { test } from "node:test";
import { TcpStack } from "../../kernel/net/socket/tcp.ts";
import { TcpState, tcpStateName } from "../../kernel/net/socket/tcp-connection.ts";
import { TCP_ACK, TCP_SYN, tcpChecksum, tcpHeaderValid, fillTcpChecksum } from "../../kernel/net/wire/tcp.ts";
import { ADDRESS_A, ADDRESS_B, buildSegment, RecordingSender, SECRET, seededRandom } from "./net-tcp-harness.ts";

test("random and mutated segments cause only counted drops and RSTs, never exceptions", () => {
  const random = seededRandom(42);
  const sender = new RecordingSender(ADDRESS_A);
  const stack = new TcpStack(sender, { isnSecret: SECRET, challengeAckLimit: 1_000_000 });
  const listener = stack.listen(80, 4);
  let now = 0;
  // One real connection so that fuzzed segments reach the established-state code.
  stack.input(ADDRESS_B, ADDRESS_A, buildSegment(ADDRESS_B, ADDRESS_A, { sourcePort: 5555, destinationPort: 80, flags: TCP_SYN, sequence: 1, maxSegmentSize: 1460, windowScale: 2, timestamps: [1, 0] }), now);
  const synAck = sender.take()[0]!;
  stack.input(ADDRESS_B, ADDRESS_A, buildSegment(ADDRESS_B, ADDRESS_A, { sourcePort: 5555, destinationPort: 80, flags: TCP_ACK, sequence: 2, acknowledgment: synAck.sequence + 1, timestamps: [2, synAck.options.timestampValue] }), now);
  const connection = listener.accept()!;
  assert.equal(connection.state, TcpState.Established);
  connection.write(new Uint8Array(5000));
  const near = () => (connection.receiveNext + Math.floor((random() - 0.5) * 200_000)) >>> 0;
  const nearAck = () => (connection.sendUnacknowledged + Math.floor((random() - 0.5) * 20_000)) >>> 0;
  const valid: Uint8Array[] = [];
  const iterations = 30_000;
  for (let i = 0; i < iterations; i++) {
    const kind = random();
    let bytes: Uint8Array;
    if (kind < 0.2) {
      bytes = new Uint8Array(Math.floor(random() * 80));
      for (let j = 0; j < bytes.length; j++) bytes[j] = (random() * 256) | 0;
      if (random() < 0.5 && bytes.length >= 20) { bytes[12] = 0x50; fillTcpChecksum(ADDRESS_B, ADDRESS_A, bytes); }
    } else if (kind < 0.7) {
      const payload = new Uint8Array(Math.floor(random() * 3000 * random()));
      bytes = buildSegment(ADDRESS_B, ADDRESS_A, {
        sourcePort: random() < 0.8 ? 5555 : 1 + Math.floor(random() * 65535),
        destinationPort: random() < 0.9 ? 80 : Math.floor(random() * 65536),
        flags: (random() * 256) | 0, sequence: near(), acknowledgment: nearAck(), window: (random() * 65536) | 0,
        ...(random() < 0.5 ? { timestamps: [(random() * 2 ** 32) >>> 0, (random() * 2 ** 32) >>> 0] as [number, number] } : {}),
        ...(random() < 0.1 ? { maxSegmentSize: (random() * 65536) | 0, windowScale: (random() * 256) | 0 } : {}),
        payload,
      });
      valid.push(bytes);
      if (valid.length > 50) valid.shift();
    } else {
      const base = valid.length > 0 ? valid[Math.floor(random() * valid.length)]! : new Uint8Array(20);
      bytes = base.slice(0, random() < 0.2 ? Math.floor(random() * base.length) : base.length);
      const flips = 1 + Math.floor(random() * 4);
      for (let j = 0; j < flips && bytes.length > 0; j++) bytes[Math.floor(random() * bytes.length)] = (random() * 256) | 0;
      if (random() < 0.7 && bytes.length >= 18) fillTcpChecksum(ADDRESS_B, ADDRESS_A, bytes);
    }
    stack.input(ADDRESS_B, ADDRESS_A, bytes, now);
    if (random() < 0.1) now += random() * 500;
    if (stack.pollAt() <= now) stack.poll(now);
    if (connection.readableLength > 0 && random() < 0.5) connection.read();
    if (connection.state === TcpState.Established && random() < 0.05) connection.write(new Uint8Array(100));
    for (const out of sender.take()) {
      assert.ok(tcpHeaderValid(out.bytes), "every emitted segment is well-formed");
      assert.equal(tcpChecksum(out.source, out.destination, out.bytes), 0);
    }
  }
  const c = stack.counters;
  assert.equal(c.segmentsReceived, iterations + 2);
  assert.ok(c.droppedChecksum > 0 && c.droppedMalformed > 0 && c.droppedNoConnection > 0);
  console.log(`# fuzz: ${JSON.stringify(c)}; connection ended ${tcpStateName(connection.state)} ${connection.error?.code ?? ""}`);
  // The stack still works afterwards.
  now += 1_000_000;
  stack.poll(now);
  stack.input(ADDRESS_B, ADDRESS_A, buildSegment(ADDRESS_B, ADDRESS_A, { sourcePort: 6666, destinationPort: 80, flags: TCP_SYN, sequence: 1 }), now);
  const fresh = sender.take().find((s) => s.destinationPort === 6666)!;
  assert.equal(fresh.flags, TCP_SYN | TCP_ACK);
});
