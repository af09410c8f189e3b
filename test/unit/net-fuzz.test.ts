/**
 * Fuzzing (seeded, deterministic): thousands of random and mutated frames go into an
 * interface with UDP sockets, a DHCP client and a DNS resolver attached. Nothing may
 * throw; every frame is either delivered or counted; buffers stay within their limits.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { DhcpClient } from "../../kernel/net/dhcp.ts";
import { DnsResolver } from "../../kernel/net/dns.ts";
import { Ipv4Interface } from "../../kernel/net/iface/interface.ts";
import { PROTOCOL_ICMP, PROTOCOL_TCP, PROTOCOL_UDP, parseIpv4 as ip } from "../../kernel/net/ip.ts";
import { UdpLayer } from "../../kernel/net/socket/udp.ts";
import { checksum, finishChecksum, pseudoHeaderSum, sumWords } from "../../kernel/net/wire/checksum.ts";
import { parseDhcp } from "../../kernel/net/wire/dhcp.ts";
import { emitDns, parseDns } from "../../kernel/net/wire/dns.ts";
import { writeUint16 } from "../../kernel/net/wire/ipv4.ts";
import { captured } from "./net-captures.ts";
import type { SeededRandom } from "./net-helpers.ts";
import { createLink, createRandom } from "./net-helpers.ts";

const seeds = Object.values(captured);

/** Recomputes the IPv4 header checksum and the UDP/ICMP checksum so that mutations reach deeper layers. */
function fixChecksums(frame: Uint8Array): void {
  if (frame.length < 34 || frame[12] !== 0x08 || frame[13] !== 0x00) return;
  const headerLength = (frame[14]! & 0x0f) * 4;
  if (headerLength < 20 || 14 + headerLength > frame.length) return;
  writeUint16(frame, 24, 0);
  writeUint16(frame, 24, checksum(frame, 14, 14 + headerLength));
  const start = 14 + headerLength;
  const end = Math.min(frame.length, 14 + ((frame[16]! << 8) | frame[17]!));
  if (end - start < 8) return;
  if (frame[23] === PROTOCOL_ICMP) {
    writeUint16(frame, start + 2, 0);
    writeUint16(frame, start + 2, checksum(frame, start, end));
  } else if (frame[23] === PROTOCOL_UDP) {
    const length = Math.min((frame[start + 4]! << 8) | frame[start + 5]!, end - start);
    if (length < 8) return;
    const source = ((frame[26]! << 24) | (frame[27]! << 16) | (frame[28]! << 8) | frame[29]!) >>> 0;
    const destination = ((frame[30]! << 24) | (frame[31]! << 16) | (frame[32]! << 8) | frame[33]!) >>> 0;
    writeUint16(frame, start + 6, 0);
    const value = finishChecksum(sumWords(frame, start, start + length, pseudoHeaderSum(source, destination, PROTOCOL_UDP, length)));
    writeUint16(frame, start + 6, value || 0xffff);
  }
}

/** One fuzz input: random bytes, or a captured frame with bit flips, byte writes, truncation or extension. */
function fuzzFrame(random: SeededRandom): Uint8Array {
  if (random.next() < 0.1) {
    const frame = new Uint8Array(random.below(1600));
    for (let i = 0; i < frame.length; i++) frame[i] = random.below(256);
    if (frame.length >= 14 && random.next() < 0.5) frame.set([0x52, 0x54, 0, 0, 0, 0x0b, 0x52, 0x54, 0, 0, 0, 0x0a, 0x08, random.next() < 0.5 ? 0x00 : 0x06]);
    return frame;
  }
  let frame = seeds[random.below(seeds.length)]!.slice();
  frame.set([0x52, 0x54, 0, 0, 0, random.next() < 0.9 ? 0x0b : 0xff], 0);
  const mutations = 1 + random.below(4);
  for (let m = 0; m < mutations; m++) {
    const kind = random.below(5);
    if (kind === 0 && frame.length > 0) frame[random.below(frame.length)]! ^= 1 << random.below(8);
    else if (kind === 1 && frame.length > 0) frame[14 + random.below(Math.max(1, Math.min(60, frame.length - 14)))] = random.below(256);
    else if (kind === 2) frame = frame.subarray(0, random.below(frame.length + 1));
    else if (kind === 3) {
      const longer = new Uint8Array(frame.length + random.below(64));
      longer.set(frame);
      frame = longer;
    } else if (frame.length > 20) {
      // Interesting values in the IPv4 length, flags/offset and protocol fields.
      const field = [16, 17, 20, 21, 23][random.below(5)]!;
      frame[field] = [0, 1, 0x20, 0x3f, 0x40, 0x7f, 0xff, 6, 17, 1][random.below(10)]!;
    }
  }
  if (random.next() < 0.6) fixChecksums(frame);
  return frame;
}

test("fuzz: 20,000 random and mutated frames: nothing escapes but counted drops", () => {
  const random = createRandom(0x70717);
  const link = createLink();
  const iface = new Ipv4Interface(link.b, { reassembly: { maxDatagrams: 8, maxBytes: 64 * 1024 } });
  iface.configure({ address: ip("10.9.0.2"), prefixLength: 24, gateway: ip("10.9.0.1") }, 0);
  const udp = new UdpLayer(iface);
  iface.register(PROTOCOL_UDP, udp);
  let tcpSegments = 0;
  iface.register(PROTOCOL_TCP, { input: () => { tcpSegments++; } });
  const sockets = [udp.bind(53), udp.bind(9999), udp.bind(67)];
  let now = 0;
  const total = 20_000;
  for (let i = 0; i < total; i++) {
    link.b.inject(fuzzFrame(random));
    if (i % 16 === 0) {
      now += random.below(2000);
      iface.poll(now);
      link.b.takeTransmitted();
      for (const socket of sockets) while (socket.receive()) { /* drain */ }
      assert.ok(iface.fragments.buffered <= 64 * 1024);
      assert.ok(iface.fragments.inProgress <= 8);
      assert.ok(iface.neighbors.pendingPackets <= 64);
      assert.ok(iface.neighbors.size <= 64);
    }
  }
  iface.poll(now + 1);
  assert.equal(iface.counters.framesReceived, total);
  const dropped = iface.totalDrops;
  assert.ok(dropped > total / 2, `drops ${dropped}`);
  assert.ok(iface.counters.packetsDelivered > 1000, `delivered ${iface.counters.packetsDelivered}`);
  // Show the spread: most drop reasons should have been exercised.
  const exercised = Object.entries(iface.drops).filter(([, count]) => count > 0).map(([reason]) => reason);
  assert.ok(exercised.length >= 15, exercised.join(" "));
  void tcpSegments;
});

test("fuzz: an unconfigured interface running DHCP survives mutated DHCP and random traffic", () => {
  const random = createRandom(42);
  const link = createLink();
  const iface = new Ipv4Interface(link.a);
  const udp = new UdpLayer(iface);
  iface.register(PROTOCOL_UDP, udp);
  const client = new DhcpClient(udp, link.a.mac, {
    random: () => random.next(),
    onLease: (lease) => iface.configure(lease),
    onLeaseLost: () => iface.configure(null),
  });
  client.start(0);
  let now = 0;
  for (let i = 0; i < 5000; i++) {
    const frame = fuzzFrame(random);
    if (frame.length >= 6) frame.set([0x52, 0x54, 0, 0, 0, 0x0a], 0);
    link.a.inject(frame);
    if (i % 8 === 0) {
      now += random.below(5000);
      iface.poll(now);
      client.poll(now);
      link.a.takeTransmitted();
    }
  }
  iface.poll(now + 1);
  client.poll(now + 1);
  assert.equal(iface.counters.framesReceived, 5000);
  assert.ok(client.counters.ignored > 0);
});

test("fuzz: DNS and DHCP parsers return values or typed errors for 100,000 mutated inputs", () => {
  const random = createRandom(7);
  const payloads = [captured.dnsResponseAlias, captured.dnsResponseWww, captured.dnsResponseNope, captured.dhcpAck, captured.dhcpOffer]
    .map((frame) => frame.subarray(42));
  let parsed = 0;
  for (let i = 0; i < 100_000; i++) {
    let bytes = payloads[random.below(payloads.length)]!.slice();
    for (let m = 0; m < 1 + random.below(3); m++) {
      if (random.next() < 0.2) bytes = bytes.subarray(0, random.below(bytes.length + 1));
      else if (bytes.length > 0) bytes[random.below(bytes.length)] = random.next() < 0.3 ? 0xc0 | random.below(64) : random.below(256);
    }
    const dns = parseDns(bytes);
    const dhcp = parseDhcp(bytes);
    if (typeof dns !== "string" || typeof dhcp !== "string") parsed++;
    if (typeof dns !== "string") emitDns(dns); // whatever parsed can be re-encoded (or reports why not)
  }
  assert.ok(parsed > 1000);
});

test("fuzz: a resolver fed mutated answers to its own queries settles every lookup", async () => {
  const random = createRandom(99);
  const link = createLink();
  const iface = new Ipv4Interface(link.a);
  iface.configure({ address: ip("10.9.0.15"), prefixLength: 24, gateway: 0 }, 0);
  const udp = new UdpLayer(iface);
  iface.register(PROTOCOL_UDP, udp);
  const resolver = new DnsResolver(udp, { servers: [ip("10.9.0.2")], random: () => random.next(), attempts: 2, timeout: 100 });
  // The server's MAC is known, so queries leave at once.
  iface.neighbors.update(ip("10.9.0.2"), link.b.mac, 0, true);
  let settled = 0;
  let now = 0;
  const template = captured.dnsResponseAlias;
  for (let i = 0; i < 2000; i++) {
    resolver.lookup(`alias.torito.test`).then(() => settled++, () => settled++);
    resolver.flush();
    for (const query of link.a.takeTransmitted()) {
      if (query.length < 44) continue;
      const response = template.slice();
      response.set(query.subarray(34, 36), 34); // destination port = the query's source port
      response.set(query.subarray(42, 44), 42); // id
      for (let m = 0; m < random.below(4); m++) {
        const at = 42 + 12 + random.below(response.length - 54);
        response[at] = random.next() < 0.3 ? 0xc0 | random.below(64) : random.below(256);
      }
      fixChecksums(response);
      link.a.inject(response);
    }
    now += 60;
    iface.poll(now);
    resolver.poll(now);
    await Promise.resolve();
  }
  for (let i = 0; i < 10; i++) { now += 100; iface.poll(now); resolver.poll(now); }
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(settled, 2000);
  assert.equal(resolver.pollAt(), Infinity);
});
