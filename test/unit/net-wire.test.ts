import assert from "node:assert/strict";
import { test } from "node:test";
import { parseIpv4 as ip } from "../../kernel/net/ip.ts";
import { ARP_OPERATION_REPLY, ARP_OPERATION_REQUEST, ArpPacket, emitArp, parseArp } from "../../kernel/net/wire/arp.ts";
import { EthernetFrame, ETHERTYPE_ARP, ETHERTYPE_IPV4, emitEthernet, formatMac, parseEthernet } from "../../kernel/net/wire/ethernet.ts";
import { ICMP_PORT_UNREACHABLE, IcmpPacket, emitIcmp, icmpLength, parseIcmp } from "../../kernel/net/wire/icmp.ts";
import { Ipv4Packet, emitIpv4, parseIpv4, prefixToNetmask } from "../../kernel/net/wire/ipv4.ts";
import { UdpDatagram, emitUdp, parseUdp } from "../../kernel/net/wire/udp.ts";
import { captured } from "./net-captures.ts";

const client = ip("10.9.0.15");
const server = ip("10.9.0.2");

test("ethernet: a captured ARP request parses and re-emits byte for byte", () => {
  const frame = new EthernetFrame(captured.arpRequest);
  const repr = parseEthernet(frame);
  assert.ok(typeof repr !== "string");
  assert.equal(formatMac(repr.destination), "ff:ff:ff:ff:ff:ff");
  assert.equal(formatMac(repr.source), "52:54:00:00:00:0a");
  assert.equal(repr.etherType, ETHERTYPE_ARP);
  const out = new Uint8Array(captured.arpRequest.length);
  out.set(captured.arpRequest.subarray(14), 14);
  emitEthernet(repr, new EthernetFrame(out));
  assert.deepEqual(out, captured.arpRequest);
  assert.equal(parseEthernet(new EthernetFrame(new Uint8Array(13))), "ethernet-truncated");
});

test("arp: captured request and reply round-trip; malformed ones are typed errors", () => {
  for (const [bytes, operation] of [[captured.arpRequest, ARP_OPERATION_REQUEST], [captured.arpReply, ARP_OPERATION_REPLY]] as const) {
    const repr = parseArp(new ArpPacket(bytes, 14));
    assert.ok(typeof repr !== "string");
    assert.equal(repr.operation, operation);
    const out = new Uint8Array(28);
    emitArp(repr, new ArpPacket(out));
    assert.deepEqual(out, bytes.subarray(14, 42));
  }
  const reply = parseArp(new ArpPacket(captured.arpReply, 14));
  assert.ok(typeof reply !== "string");
  assert.equal(reply.senderProtocol, server);
  assert.equal(formatMac(reply.senderHardware), "52:54:00:00:00:0b");
  assert.equal(parseArp(new ArpPacket(captured.arpReply.subarray(0, 40), 14)), "arp-truncated");
  const bad = captured.arpReply.slice();
  bad[14 + 7] = 9;
  assert.equal(parseArp(new ArpPacket(bad, 14)), "arp-bad-operation");
  bad[14 + 4] = 8;
  assert.equal(parseArp(new ArpPacket(bad, 14)), "arp-unsupported");
});

test("ipv4: captured headers verify, parse, and re-emit with the same checksum", () => {
  for (const bytes of [captured.echoRequest, captured.echoReply, captured.udpToClosedPort, captured.dnsResponseAlias]) {
    const view = new Ipv4Packet(bytes, 14);
    const repr = parseIpv4(view);
    assert.ok(typeof repr !== "string", String(repr));
    const out = new Uint8Array(20);
    emitIpv4(repr, new Ipv4Packet(out));
    assert.deepEqual(out, bytes.subarray(14, 34));
  }
  const repr = parseIpv4(new Ipv4Packet(captured.echoRequest, 14));
  assert.ok(typeof repr !== "string");
  assert.equal(repr.source, client);
  assert.equal(repr.destination, server);
  assert.equal(repr.protocol, 1);
  assert.equal(repr.payloadLength, 64);
  assert.equal(repr.dontFragment, true);
});

test("ipv4: captured fragments carry offsets 0, 1480, 2960 and MF on all but the last", () => {
  const parts = [captured.fragmentedEchoRequest0, captured.fragmentedEchoRequest1, captured.fragmentedEchoRequest2].map((bytes) => {
    const repr = parseIpv4(new Ipv4Packet(bytes, 14));
    assert.ok(typeof repr !== "string");
    return repr;
  });
  assert.deepEqual(parts.map((p) => p.fragmentOffset), [0, 1480, 2960]);
  assert.deepEqual(parts.map((p) => p.moreFragments), [true, true, false]);
  assert.equal(new Set(parts.map((p) => p.identification)).size, 1);
});

test("ipv4: each malformation is reported by name", () => {
  const good = captured.echoRequest.subarray(14);
  const mutate = (f: (b: Uint8Array) => void): Uint8Array => { const b = good.slice(); f(b); return b; };
  assert.equal(parseIpv4(new Ipv4Packet(good.subarray(0, 19))), "ipv4-truncated");
  assert.equal(parseIpv4(new Ipv4Packet(mutate((b) => { b[0] = 0x65; }))), "ipv4-bad-version");
  assert.equal(parseIpv4(new Ipv4Packet(mutate((b) => { b[0] = 0x44; }))), "ipv4-bad-header-length");
  assert.equal(parseIpv4(new Ipv4Packet(mutate((b) => { b[2] = 0x10; }))), "ipv4-bad-total-length");
  assert.equal(parseIpv4(new Ipv4Packet(mutate((b) => { b[3] = 0x10; }))), "ipv4-bad-total-length");
  assert.equal(parseIpv4(new Ipv4Packet(mutate((b) => { b[8] ^= 1; }))), "ipv4-bad-checksum");
  assert.equal(prefixToNetmask(24), 0xffffff00);
  assert.equal(prefixToNetmask(32), 0xffffffff);
  assert.equal(prefixToNetmask(0), 0);
});

test("icmp: captured echo request/reply and port unreachable parse and re-emit", () => {
  const request = new IcmpPacket(captured.echoRequest, 34);
  const repr = parseIcmp(request);
  assert.ok(typeof repr !== "string" && repr.kind === "echo-request");
  assert.equal(repr.sequence, 1);
  assert.equal(repr.data.length, 56);
  const out = new Uint8Array(icmpLength(repr));
  emitIcmp(repr, new IcmpPacket(out));
  assert.deepEqual(out, captured.echoRequest.subarray(34));

  const unreachable = parseIcmp(new IcmpPacket(captured.icmpPortUnreachable, 34));
  assert.ok(typeof unreachable !== "string" && unreachable.kind === "destination-unreachable");
  assert.equal(unreachable.code, ICMP_PORT_UNREACHABLE);
  // The quoted datagram is the UDP packet we sent: its IP header and first 8 bytes at least.
  assert.deepEqual(unreachable.original.subarray(0, 28), captured.udpToClosedPort.subarray(14, 42));

  const corrupt = captured.echoReply.slice();
  corrupt[50] ^= 0xff;
  assert.equal(parseIcmp(new IcmpPacket(corrupt, 34)), "icmp-bad-checksum");
  assert.equal(parseIcmp(new IcmpPacket(corrupt.subarray(0, 40), 34)), "icmp-truncated");
});

test("udp: captured datagram verifies its checksum and round-trips", () => {
  const view = new UdpDatagram(captured.udpToClosedPort, 34);
  const repr = parseUdp(view, client, server);
  assert.ok(typeof repr !== "string");
  assert.equal(repr.destinationPort, 9999);
  assert.equal(new TextDecoder().decode(view.payload), "hello torito");
  const out = captured.udpToClosedPort.slice(34);
  out.fill(0, 0, 8);
  emitUdp(repr, new UdpDatagram(out), client, server);
  assert.deepEqual(out, captured.udpToClosedPort.subarray(34));
  // A wrong pseudo-header (another destination) fails the checksum.
  assert.equal(parseUdp(new UdpDatagram(captured.udpToClosedPort, 34), client, ip("10.9.0.3")), "udp-bad-checksum");
  const short = captured.udpToClosedPort.slice(34);
  short[5] = 200;
  assert.equal(parseUdp(new UdpDatagram(short), client, server), "udp-bad-length");
  assert.equal(parseUdp(new UdpDatagram(short.subarray(0, 7)), client, server), "udp-truncated");
  // Checksum 0 means "none" (RFC 768).
  const unchecked = captured.udpToClosedPort.slice(34);
  unchecked[6] = 0;
  unchecked[7] = 0;
  assert.ok(typeof parseUdp(new UdpDatagram(unchecked), client, server) !== "string");
});

test("views rebind without allocating: one view parses many frames", () => {
  const view = new Ipv4Packet();
  for (const bytes of [captured.echoRequest, captured.arpRequest, captured.dnsQueryWww]) {
    const ethernet = new EthernetFrame(bytes);
    if (ethernet.etherType !== ETHERTYPE_IPV4) continue;
    assert.equal(view.bind(bytes, 14).check(), null);
  }
});
