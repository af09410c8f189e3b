import assert from "node:assert/strict";
import { test } from "node:test";
import { Ipv4Interface } from "../../kernel/net/iface/interface.ts";
import { PROTOCOL_ICMP, PROTOCOL_UDP, parseIpv4 as ip } from "../../kernel/net/ip.ts";
import { UdpLayer } from "../../kernel/net/socket/udp.ts";
import { ICMP_DESTINATION_UNREACHABLE, ICMP_ECHO_REPLY, ICMP_PORT_UNREACHABLE } from "../../kernel/net/wire/icmp.ts";
import { Ipv4Packet, writeIpv4Header } from "../../kernel/net/wire/ipv4.ts";
import { captured } from "./net-captures.ts";
import type { TestLink } from "./net-helpers.ts";
import { createLink } from "./net-helpers.ts";

interface Pair {
  link: TestLink;
  a: Ipv4Interface;
  b: Ipv4Interface;
  udpA: UdpLayer;
  udpB: UdpLayer;
  icmpA: { source: number; bytes: Uint8Array }[];
  /** Moves frames and polls both sides until the wire is quiet. */
  pump(now: number): void;
}

function pair(options: Parameters<typeof createLink>[0] = {}): Pair {
  const link = createLink(options);
  const a = new Ipv4Interface(link.a);
  const b = new Ipv4Interface(link.b);
  a.configure({ address: ip("10.0.0.1"), prefixLength: 24, gateway: ip("10.0.0.254") }, 0);
  b.configure({ address: ip("10.0.0.2"), prefixLength: 24, gateway: 0 }, 0);
  const udpA = new UdpLayer(a);
  const udpB = new UdpLayer(b);
  a.register(PROTOCOL_UDP, udpA);
  b.register(PROTOCOL_UDP, udpB);
  const icmpA: Pair["icmpA"] = [];
  a.register(PROTOCOL_ICMP, { input: (source, _destination, segment) => { icmpA.push({ source, bytes: segment.slice() }); } });
  const pump = (now: number): void => {
    for (let round = 0; round < 1000; round++) {
      const moved = link.deliver();
      const received = a.poll(now) + b.poll(now);
      if (moved === 0 && received === 0 && link.a.transmitted.length === 0 && link.b.transmitted.length === 0) return;
    }
  };
  return { link, a, b, udpA, udpB, icmpA, pump };
}

test("configuring an address announces it with gratuitous ARP, twice, 2 s apart, and resolves the gateway at once", () => {
  const { link, a } = pair();
  const first = link.a.takeTransmitted();
  assert.equal(first.length, 2);
  assert.equal(first[0]![21], 1); // ARP request
  assert.deepEqual(first[0]!.subarray(28, 32), first[0]!.subarray(38, 42)); // sender IP = target IP
  assert.equal(first[1]![21], 1); // ARP request for the gateway, before any packet needs it
  assert.deepEqual(Array.from(first[1]!.subarray(38, 42)), [10, 0, 0, 254]);
  const gratuitous = (frames: Uint8Array[]) =>
    frames.filter((f) => f[21] === 1 && f.subarray(28, 32).every((b, i) => b === f[38 + i])).length;
  a.poll(1999);
  assert.equal(gratuitous(link.a.takeTransmitted()), 0);
  a.poll(2000);
  assert.equal(gratuitous(link.a.takeTransmitted()), 1);
  for (let t = 2001; t < 10_000; t += 500) a.poll(t);
  assert.equal(gratuitous(link.a.takeTransmitted()), 0);
  assert.equal(a.pollAt(), Infinity);
});

test("ping: ARP resolves the neighbour, the queued echo goes out, the reply comes back", () => {
  const p = pair();
  p.pump(0);
  assert.equal(p.a.neighbors.lookup(ip("10.0.0.2"), 0), null); // announcements do not create entries
  const data = new TextEncoder().encode("torito ping");
  assert.ok(p.a.ping(ip("10.0.0.2"), 0x1234, 7, data));
  assert.equal(p.a.neighbors.pendingPackets, 1);
  p.pump(10);
  assert.equal(p.icmpA.length, 1);
  const reply = p.icmpA[0]!;
  assert.equal(reply.source, ip("10.0.0.2"));
  assert.equal(reply.bytes[0], ICMP_ECHO_REPLY);
  assert.deepEqual(reply.bytes.subarray(8), data);
  assert.equal(p.b.counters.echoRepliesSent, 1);
  assert.ok(p.a.neighbors.lookup(ip("10.0.0.2"), 10));
  assert.ok(p.b.neighbors.lookup(ip("10.0.0.1"), 10), "B learned A from A's request (RFC 826 merge)");
  // Only the other side's gratuitous ARPs were ignored (about hosts not in the cache).
  assert.equal(p.a.totalDrops + p.b.totalDrops, p.a.drops["arp-not-for-us"] + p.b.drops["arp-not-for-us"]);
});

test("a neighbour that never answers gets 3 ARP requests, 1 s apart, then its packets are dropped", () => {
  const p = pair();
  p.link.a.takeTransmitted();
  p.a.poll(0);
  assert.ok(p.a.ping(ip("10.0.0.99"), 1, 1));
  assert.ok(p.a.ping(ip("10.0.0.99"), 1, 2));
  const requests = (): number => p.link.a.takeTransmitted().filter((f) => f[13] === 0x06 && f[41] === 99).length;
  assert.equal(requests(), 1);
  assert.equal(p.a.pollAt(), 1000);
  p.a.poll(1000);
  assert.equal(requests(), 1);
  p.a.poll(2000);
  assert.equal(requests(), 1);
  p.a.poll(3000);
  assert.equal(requests(), 0);
  assert.equal(p.a.neighbors.droppedUnresolved, 2);
  assert.equal(p.a.neighbors.pendingPackets, 0);
});

test("off-link destinations go to the gateway; without a gateway they are counted as unroutable", () => {
  const p = pair();
  p.link.a.takeTransmitted();
  p.link.b.takeTransmitted();
  p.a.ping(ip("8.8.8.8"), 1, 1);
  // the gateway's resolution started at configuration: the echo waits for it, no new request
  assert.equal(p.link.a.takeTransmitted().length, 0);
  assert.equal(p.a.neighbors.pendingPackets, 1);
  p.a.poll(1000); // the unanswered request is retried
  const arp = p.link.a.takeTransmitted()[0]!;
  assert.deepEqual(Array.from(arp.subarray(38, 42)), [10, 0, 0, 254]);
  assert.equal(p.b.ping(ip("8.8.8.8"), 1, 1), false);
  assert.equal(p.b.drops["send-no-route"], 1);
});

test("UDP: a datagram and its answer cross the link; a closed port answers ICMP port unreachable", () => {
  const p = pair();
  const server = p.udpB.bind(7);
  const client = p.udpA.bind();
  assert.ok(client.port >= 49152);
  assert.ok(client.sendTo(ip("10.0.0.2"), 7, new TextEncoder().encode("ping")));
  p.pump(0);
  const request = server.receive()!;
  assert.equal(new TextDecoder().decode(request.data), "ping");
  assert.equal(request.source, ip("10.0.0.1"));
  assert.equal(request.sourcePort, client.port);
  server.sendTo(request.source, request.sourcePort, new TextEncoder().encode("pong"));
  p.pump(1);
  assert.equal(new TextDecoder().decode(client.receive()!.data), "pong");

  client.sendTo(ip("10.0.0.2"), 9, new Uint8Array([1, 2, 3]));
  p.pump(2);
  const unreachable = p.icmpA.at(-1)!;
  assert.equal(unreachable.bytes[0], ICMP_DESTINATION_UNREACHABLE);
  assert.equal(unreachable.bytes[1], ICMP_PORT_UNREACHABLE);
  const quoted = new Ipv4Packet(unreachable.bytes, 8);
  assert.equal(quoted.destination, ip("10.0.0.2"));
  assert.equal(p.udpB.counters.noListener, 1);
});

test("ICMP errors are rate-limited by a token bucket", () => {
  const p = pair();
  const client = p.udpA.bind();
  p.a.ping(ip("10.0.0.2"), 1, 1);
  p.pump(0);
  for (let i = 0; i < 50; i++) client.sendTo(ip("10.0.0.2"), 9, new Uint8Array([i]));
  p.pump(0);
  assert.equal(p.b.counters.unreachablesSent, 10);
  assert.equal(p.b.drops["icmp-rate-limited"], 40);
  for (let i = 0; i < 5; i++) client.sendTo(ip("10.0.0.2"), 9, new Uint8Array([i]));
  p.pump(300); // 0.3 s refills 3 tokens
  assert.equal(p.b.counters.unreachablesSent, 13);
});

test("a UDP socket's full queue drops and counts", () => {
  const p = pair();
  const server = p.udpB.bind(7, { queueLimit: 4 });
  const client = p.udpA.bind();
  for (let i = 0; i < 10; i++) client.sendTo(ip("10.0.0.2"), 7, new Uint8Array([i]));
  p.pump(0);
  assert.equal(server.pending, 4);
  assert.equal(server.dropped, 6);
  assert.deepEqual([0, 1, 2, 3].map(() => server.receive()!.data[0]), [0, 1, 2, 3]);
  server.close();
  const again = p.udpB.bind(7);
  assert.throws(() => p.udpB.bind(7), /in-use/);
  again.close();
});

test("fragmentation: a 5000-byte datagram is sent in 4 fragments and reassembled", () => {
  const p = pair();
  const server = p.udpB.bind(7);
  const client = p.udpA.bind();
  const payload = new Uint8Array(5000).map((_, i) => (i * 7) & 255);
  p.a.ping(ip("10.0.0.2"), 1, 1); // resolve first
  p.pump(0);
  assert.ok(client.sendTo(ip("10.0.0.2"), 7, payload));
  const frames = p.link.a.takeTransmitted();
  assert.equal(frames.length, 4);
  assert.equal(p.a.counters.fragmentsSent, 4);
  // Deliver out of order, with duplicates.
  for (const index of [3, 1, 1, 0, 3, 2]) p.link.b.inject(frames[index]!.slice());
  p.b.poll(1);
  const received = server.receive()!;
  assert.deepEqual(received.data, payload);
  assert.equal(server.receive(), undefined);
  assert.equal(p.b.fragments.reassembled, 1);
  assert.equal(p.b.fragments.inProgress, 0, "the late duplicates started a new datagram that never completes");
});

/** Builds raw fragment frames from A (10.0.0.1) to B (10.0.0.2) with chosen offsets. */
function fragmentFrame(link: TestLink, id: number, offset: number, data: Uint8Array, more: boolean): Uint8Array {
  const frame = new Uint8Array(34 + data.length);
  frame.set(link.b.mac, 0);
  frame.set(link.a.mac, 6);
  frame[12] = 0x08;
  writeIpv4Header(frame, 14, ip("10.0.0.1"), ip("10.0.0.2"), PROTOCOL_UDP, data.length, id, 64, (more ? 0x2000 : 0) | (offset >>> 3));
  frame.set(data, 34);
  return frame;
}

test("overlapping fragments drop the whole datagram; time-outs and limits are counted", () => {
  const p = pair();
  p.pump(0);
  const chunk = new Uint8Array(16).fill(0xaa);
  p.link.b.inject(fragmentFrame(p.link, 1, 0, chunk, true));
  p.link.b.inject(fragmentFrame(p.link, 1, 8, chunk, true)); // overlaps [8,16)
  p.b.poll(0);
  assert.equal(p.b.drops["fragment-overlap"], 2);
  assert.equal(p.b.fragments.inProgress, 0);
  assert.equal(p.b.fragments.buffered, 0);

  // A lone first fragment waits for 15 s, then is abandoned.
  p.link.b.inject(fragmentFrame(p.link, 2, 0, chunk, true));
  p.b.poll(100);
  assert.equal(p.b.fragments.pollAt(), 15_100);
  p.b.poll(15_100);
  assert.equal(p.b.drops["fragment-timeout"], 1);
  assert.equal(p.b.fragments.inProgress, 0);

  // At most 16 datagrams in progress.
  for (let id = 10; id < 30; id++) p.link.b.inject(fragmentFrame(p.link, id, 0, chunk, true));
  p.b.poll(20_000);
  assert.equal(p.b.fragments.inProgress, 16);
  assert.equal(p.b.drops["fragment-no-room"], 4);

  // Fragments that would exceed 65535 bytes, or a non-final fragment that is not a multiple of 8.
  p.link.b.inject(fragmentFrame(p.link, 40, 65528, chunk, false));
  p.link.b.inject(fragmentFrame(p.link, 41, 0, new Uint8Array(12), true));
  p.b.poll(20_001);
  assert.equal(p.b.drops["fragment-too-large"], 1);
  assert.equal(p.b.drops["fragment-bad-length"], 1);

  // A last fragment that contradicts an earlier one.
  p.link.b.inject(fragmentFrame(p.link, 10, 32, chunk, false));
  p.link.b.inject(fragmentFrame(p.link, 10, 16, chunk, false));
  p.b.poll(20_002);
  assert.equal(p.b.drops["fragment-inconsistent"], 3);
});

test("captured Linux frames: our ARP reply is byte-identical to Linux's, and echo replies match", () => {
  const link = createLink();
  const server = new Ipv4Interface(link.b); // 52:54:00:00:00:0b, as in the capture
  server.configure({ address: ip("10.9.0.2"), prefixLength: 24, gateway: 0 }, 0);
  link.b.takeTransmitted();
  link.b.inject(captured.arpRequest);
  server.poll(0);
  assert.deepEqual(link.b.takeTransmitted(), [captured.arpReply]);

  link.b.inject(captured.echoRequest);
  server.poll(1);
  const [reply] = link.b.takeTransmitted();
  assert.ok(reply);
  assert.deepEqual(reply.subarray(34), captured.echoReply.subarray(34), "ICMP part identical");
  assert.deepEqual(reply.subarray(0, 18), captured.echoReply.subarray(0, 18));

  // ping -s 3000: three fragments in, three fragments out, same ICMP payload as Linux's reply.
  for (const frame of [captured.fragmentedEchoRequest2, captured.fragmentedEchoRequest0, captured.fragmentedEchoRequest1]) link.b.inject(frame);
  server.poll(2);
  const fragments = link.b.takeTransmitted();
  assert.equal(fragments.length, 3);
  const linux = [captured.fragmentedEchoReply0, captured.fragmentedEchoReply1, captured.fragmentedEchoReply2];
  for (let i = 0; i < 3; i++) assert.deepEqual(fragments[i]!.subarray(34), linux[i]!.subarray(34));
  assert.equal(server.totalDrops, 0);
});

test("captured UDP to a closed port: the ICMP answer quotes the datagram's header", () => {
  const link = createLink();
  const server = new Ipv4Interface(link.b);
  server.configure({ address: ip("10.9.0.2"), prefixLength: 24, gateway: 0 }, 0);
  server.register(PROTOCOL_UDP, new UdpLayer(server));
  link.b.takeTransmitted();
  link.b.inject(captured.arpRequest); // learn the client
  link.b.inject(captured.udpToClosedPort);
  server.poll(0);
  const [, unreachable] = link.b.takeTransmitted();
  assert.ok(unreachable);
  assert.deepEqual(unreachable.subarray(34, 36), captured.icmpPortUnreachable.subarray(34, 36));
  assert.deepEqual(unreachable.subarray(42, 42 + 28), captured.icmpPortUnreachable.subarray(42, 42 + 28));
});

test("a lossy, reordering, duplicating link: pings still get through and nothing escapes", () => {
  const p = pair({ loss: 0.2, duplicate: 0.2, reorder: 0.2, seed: 42 });
  let now = 0;
  for (let i = 0; i < 200; i++) {
    p.a.ping(ip("10.0.0.2"), 9, i, new Uint8Array(i * 20));
    now += 100;
    p.pump(now);
  }
  assert.ok(p.icmpA.length > 50, `got ${p.icmpA.length} replies`);
  assert.ok(p.link.stats.lost > 0 && p.link.stats.duplicated > 0 && p.link.stats.reordered > 0);
});

test("an exception thrown by a transport is counted, kept, and does not stop the receive loop", () => {
  const p = pair();
  p.b.register(17, { input: () => { throw new Error("transport bug"); } });
  const client = p.udpA.bind();
  client.sendTo(ip("10.0.0.2"), 7, new Uint8Array(1));
  client.sendTo(ip("10.0.0.2"), 7, new Uint8Array(1));
  p.pump(0);
  assert.equal(p.b.drops["transport-error"], 2);
  assert.match(String(p.b.lastTransportError), /transport bug/);
});

test("packets to our own address loop back at the next poll, not inside send()", () => {
  const p = pair();
  const server = p.udpA.bind(7);
  const client = p.udpA.bind();
  p.link.a.takeTransmitted();
  assert.ok(client.sendTo(ip("10.0.0.1"), 7, new Uint8Array([42])));
  assert.equal(server.pending, 0);
  assert.equal(p.a.pollAt(), 0);
  p.a.poll(1);
  assert.equal(server.receive()!.data[0], 42);
  assert.equal(p.link.a.transmitted.length, 0, "nothing went on the wire");
  p.a.ping(ip("10.0.0.1"), 1, 1);
  p.a.poll(2); // the request loops back, the reply is queued
  p.a.poll(3);
  assert.equal(p.icmpA.at(-1)!.bytes[0], ICMP_ECHO_REPLY);
});

test("a 60,000-byte datagram to an unresolved neighbour takes one queue slot and leaves as 41 fragments", () => {
  const p = pair();
  const server = p.udpB.bind(7, { queueBytes: 1 << 20 });
  const client = p.udpA.bind();
  const payload = new Uint8Array(60_000).map((_, i) => i & 255);
  assert.ok(client.sendTo(ip("10.0.0.2"), 7, payload));
  assert.equal(p.a.neighbors.pendingPackets, 1);
  p.pump(0);
  assert.equal(p.a.counters.fragmentsSent, 41);
  assert.deepEqual(server.receive()!.data, payload);
});

test("frames to a remembered destination (header template) match the generic path byte for byte, and the cache follows re-addressing", () => {
  const p = pair();
  const client = p.udpA.bind(5000);
  const server = p.udpB.bind(7);
  const payload = new Uint8Array([1, 2, 3, 4, 5]);
  client.sendTo(ip("10.0.0.2"), 7, payload); // resolves 10.0.0.2 first (queued behind ARP)
  p.pump(0);
  assert.ok(server.receive());
  const headers: Uint8Array[] = [];
  for (let i = 0; i < 4; i++) {
    // a miss (remember), the template built, then hits
    assert.ok(client.sendTo(ip("10.0.0.2"), 7, payload));
    const frame = p.link.a.takeTransmitted()[0]!;
    headers.push(frame.slice(0, 34));
  }
  const expected = (identification: number, source: string): Uint8Array => {
    const h = new Uint8Array(34);
    h.set(p.link.b.mac, 0);
    h.set(p.link.a.mac, 6);
    h[12] = 0x08; h[13] = 0x00;
    writeIpv4Header(h, 14, ip(source), ip("10.0.0.2"), PROTOCOL_UDP, 8 + payload.length, identification, 64, 0x4000);
    return h;
  };
  const firstId = (headers[0]![18]! << 8) | headers[0]![19]!;
  headers.forEach((h, i) => assert.deepEqual(h, expected((firstId + i) & 0xffff, "10.0.0.1"), `frame ${i}`));
  // a new address: the remembered destination (and its template) are forgotten
  p.a.configure({ address: ip("10.0.0.3"), prefixLength: 24, gateway: 0 }, 1);
  p.link.a.takeTransmitted();
  assert.ok(client.sendTo(ip("10.0.0.2"), 7, payload)); // the neighbour cache was cleared: ARP first
  p.pump(2);
  assert.equal(server.receive()?.source, ip("10.0.0.3"));
  for (let i = 0; i < 3; i++) {
    assert.ok(client.sendTo(ip("10.0.0.2"), 7, payload));
    const frame = p.link.a.takeTransmitted()[0]!;
    assert.deepEqual(frame.slice(0, 34), expected((frame[18]! << 8) | frame[19]!, "10.0.0.3"), `re-addressed frame ${i}`);
  }
});
