import assert from "node:assert/strict";
import { test } from "node:test";
import type { DhcpLease } from "../../kernel/net/dhcp.ts";
import { DhcpClient, describeLease } from "../../kernel/net/dhcp.ts";
import { Ipv4Interface } from "../../kernel/net/iface/interface.ts";
import { PROTOCOL_UDP, parseIpv4 as ip } from "../../kernel/net/ip.ts";
import { UdpLayer } from "../../kernel/net/socket/udp.ts";
import type { DhcpRepr } from "../../kernel/net/wire/dhcp.ts";
import {
  DHCP_ACK, DHCP_DISCOVER, DHCP_NAK, DHCP_OFFER, DHCP_OP_REPLY, DHCP_REQUEST, dhcpLength, emitDhcp, parseDhcp,
} from "../../kernel/net/wire/dhcp.ts";
import { readUint32 } from "../../kernel/net/wire/ipv4.ts";
import { captured } from "./net-captures.ts";
import { createLink } from "./net-helpers.ts";

const dhcpPayload = (frame: Uint8Array): Uint8Array => frame.subarray(42);

test("dhcp wire: captured udhcpc and dnsmasq messages parse, and re-emit to the same options", () => {
  const discover = parseDhcp(dhcpPayload(captured.dhcpDiscover));
  assert.ok(typeof discover !== "string");
  assert.equal(discover.messageType, DHCP_DISCOVER);
  const offer = parseDhcp(dhcpPayload(captured.dhcpOffer));
  assert.ok(typeof offer !== "string");
  assert.equal(offer.messageType, DHCP_OFFER);
  assert.equal(offer.yourAddress, ip("10.9.0.15"));
  assert.equal(offer.serverIdentifier, ip("10.9.0.2"));
  assert.equal(offer.leaseTime, 120);
  assert.equal(offer.subnetMask, 0xffffff00);
  assert.deepEqual(offer.routers, [ip("10.9.0.2")]);
  assert.deepEqual(offer.dnsServers, [ip("10.9.0.2")]);
  const request = parseDhcp(dhcpPayload(captured.dhcpRequest));
  assert.ok(typeof request !== "string");
  assert.equal(request.messageType, DHCP_REQUEST);
  assert.equal(request.requestedAddress, ip("10.9.0.15"));
  const ack = parseDhcp(dhcpPayload(captured.dhcpAck));
  assert.ok(typeof ack !== "string");
  assert.equal(ack.messageType, DHCP_ACK);
  // Round trip through our encoder: the same representation comes back.
  for (const repr of [discover, offer, request, ack]) {
    const bytes = new Uint8Array(dhcpLength(repr));
    emitDhcp(repr, bytes);
    assert.deepEqual(parseDhcp(bytes), repr);
  }
});

test("dhcp wire: malformed messages are typed errors", () => {
  const good = dhcpPayload(captured.dhcpAck);
  assert.equal(parseDhcp(good.subarray(0, 239)), "dhcp-truncated");
  const bad = good.slice();
  bad[236] = 0;
  assert.equal(parseDhcp(bad), "dhcp-bad-cookie");
  const option = good.slice();
  option[240] = 53;
  option[241] = 200; // runs past the end
  assert.equal(parseDhcp(option.subarray(0, 300)), "dhcp-bad-option");
  const hardware = good.slice();
  hardware[2] = 8;
  assert.equal(parseDhcp(hardware), "dhcp-unsupported-hardware");
});

test("dhcp client: DISCOVER, then dnsmasq's captured OFFER and ACK give a lease", () => {
  const link = createLink();
  const iface = new Ipv4Interface(link.a); // 52:54:00:00:00:0a, as udhcpc in the capture
  const udp = new UdpLayer(iface);
  iface.register(PROTOCOL_UDP, udp);
  const capturedXid = readUint32(dhcpPayload(captured.dhcpOffer), 4);
  let leases: DhcpLease[] = [];
  const client = new DhcpClient(udp, link.a.mac, {
    random: () => capturedXid / 2 ** 32,
    onLease: (lease) => { leases.push(lease); iface.configure(lease, 0); },
    onLeaseLost: () => iface.configure(null),
  });
  client.start(0);
  const [discoverFrame] = link.a.takeTransmitted();
  assert.ok(discoverFrame);
  assert.deepEqual(Array.from(discoverFrame.subarray(0, 6)), [255, 255, 255, 255, 255, 255]);
  const discover = parseDhcp(dhcpPayload(discoverFrame));
  assert.ok(typeof discover !== "string");
  assert.equal(discover.messageType, DHCP_DISCOVER);
  assert.equal(discover.transactionId, capturedXid);
  assert.equal(client.state, "selecting");

  link.a.inject(captured.dhcpOffer);
  iface.poll(5);
  client.poll(5);
  assert.equal(client.state, "requesting");
  const request = parseDhcp(dhcpPayload(link.a.takeTransmitted()[0]!));
  assert.ok(typeof request !== "string");
  assert.equal(request.messageType, DHCP_REQUEST);
  assert.equal(request.requestedAddress, ip("10.9.0.15"));
  assert.equal(request.serverIdentifier, ip("10.9.0.2"));

  link.a.inject(captured.dhcpAck);
  iface.poll(10);
  client.poll(10);
  assert.equal(client.state, "bound");
  assert.equal(leases.length, 1);
  assert.equal(describeLease(leases[0]!), "10.9.0.15/24 via 10.9.0.2, dns 10.9.0.2, 120 s");
  assert.equal(iface.address, ip("10.9.0.15"));
  assert.equal(client.pollAt(), 10 + 60_000); // T1 = lease / 2
  leases = [];
});

/** A DHCP server in the style of QEMU's user network, scripted by the test. */
function scriptedServer(options: { ignore?: number; nakRenewals?: boolean; silentAfterBind?: boolean; lease?: number }) {
  const link = createLink();
  const serverIface = new Ipv4Interface(link.b);
  serverIface.configure({ address: ip("10.0.2.2"), prefixLength: 24, gateway: 0 }, 0);
  const serverUdp = new UdpLayer(serverIface);
  serverIface.register(PROTOCOL_UDP, serverUdp);
  const socket = serverUdp.bind(67);
  const clientIface = new Ipv4Interface(link.a);
  const clientUdp = new UdpLayer(clientIface);
  clientIface.register(PROTOCOL_UDP, clientUdp);
  const seen: number[] = [];
  let ignore = options.ignore ?? 0;
  let bound = false;
  const events: string[] = [];
  const client = new DhcpClient(clientUdp, link.a.mac, {
    random: () => 0.5,
    onLease: (lease) => { events.push(`lease ${describeLease(lease)}`); clientIface.configure(lease); },
    onLeaseLost: () => { events.push("lost"); clientIface.configure(null); },
  });
  const answer = (request: DhcpRepr, type: number): void => {
    const reply: DhcpRepr = {
      op: DHCP_OP_REPLY, transactionId: request.transactionId, secondsElapsed: 0, broadcast: false,
      clientAddress: request.clientAddress, yourAddress: type === DHCP_NAK ? 0 : ip("10.0.2.15"), serverAddress: ip("10.0.2.2"),
      relayAddress: 0, clientHardware: request.clientHardware, messageType: type, serverIdentifier: ip("10.0.2.2"),
      ...(type === DHCP_NAK ? {} : {
        leaseTime: options.lease ?? 86400, subnetMask: 0xffffff00, routers: [ip("10.0.2.2")], dnsServers: [ip("10.0.2.3")],
      }),
    };
    const bytes = new Uint8Array(dhcpLength(reply));
    emitDhcp(reply, bytes);
    socket.sendTo(0xffffffff, 68, bytes);
  };
  const run = (now: number): void => {
    for (let round = 0; round < 20; round++) {
      link.deliver();
      serverIface.poll(now);
      for (let d = socket.receive(); d; d = socket.receive()) {
        const request = parseDhcp(d.data);
        if (typeof request === "string") continue;
        seen.push(request.messageType ?? 0);
        if (ignore > 0) { ignore--; continue; }
        if (request.messageType === DHCP_DISCOVER) answer(request, DHCP_OFFER);
        else if (request.messageType === DHCP_REQUEST) {
          if (bound && options.silentAfterBind) continue;
          if (bound && options.nakRenewals) { answer(request, DHCP_NAK); continue; }
          answer(request, DHCP_ACK);
          bound = true;
        }
      }
      link.deliver();
      clientIface.poll(now);
      client.poll(now);
    }
  };
  return { client, clientIface, run, seen, events };
}

test("dhcp client: retransmits DISCOVER with exponential backoff until the server answers", () => {
  const s = scriptedServer({ ignore: 3 });
  s.client.start(0);
  s.run(0);
  assert.equal(s.client.state, "selecting");
  const deadlines: number[] = [];
  for (let i = 0; i < 3; i++) {
    const at = s.client.pollAt();
    deadlines.push(at);
    s.run(at);
  }
  // random() = 0.5 means no jitter: 4 s, then 8 s, then 16 s later.
  assert.deepEqual(deadlines, [4000, 12_000, 28_000]);
  assert.equal(s.client.state, "bound");
  assert.deepEqual(s.seen, [DHCP_DISCOVER, DHCP_DISCOVER, DHCP_DISCOVER, DHCP_DISCOVER, DHCP_REQUEST]);
  assert.deepEqual(s.events, ["lease 10.0.2.15/24 via 10.0.2.2, dns 10.0.2.3, 86400 s"]);
  assert.equal(s.clientIface.address, ip("10.0.2.15"));
  assert.equal(s.clientIface.gateway, ip("10.0.2.2"));
});

test("dhcp client: renews at T1 by unicast and stays bound", () => {
  const s = scriptedServer({ lease: 3600 });
  s.client.start(0);
  s.run(0);
  assert.equal(s.client.pollAt(), 1_800_000);
  s.run(1_800_000);
  assert.equal(s.client.state, "bound");
  assert.deepEqual(s.seen, [DHCP_DISCOVER, DHCP_REQUEST, DHCP_REQUEST]);
  assert.equal(s.client.lease!.renewAt, 1_800_000 + 1_800_000);
  assert.equal(s.events.length, 2);
});

test("dhcp client: a NAK on renewal drops the address and starts over", () => {
  const s = scriptedServer({ lease: 3600, nakRenewals: true });
  s.client.start(0);
  s.run(0);
  s.run(1_800_000);
  assert.equal(s.events[1], "lost");
  assert.equal(s.clientIface.address, 0);
  // It started over at once: a new DISCOVER followed the refused renewal.
  assert.deepEqual(s.seen.slice(0, 4), [DHCP_DISCOVER, DHCP_REQUEST, DHCP_REQUEST, DHCP_DISCOVER]);
});

test("dhcp client: a silent server leads through RENEWING and REBINDING to expiry", () => {
  const s = scriptedServer({ lease: 1000, silentAfterBind: true });
  s.client.start(0);
  s.run(0);
  const states: string[] = [];
  for (let i = 0; i < 20 && s.events.length < 2; i++) {
    s.run(s.client.pollAt());
    states.push(s.client.state);
  }
  assert.ok(states.includes("renewing"));
  assert.ok(states.includes("rebinding"));
  assert.deepEqual(s.events.slice(1), ["lost"]);
  assert.equal(s.clientIface.address, 0);
});
