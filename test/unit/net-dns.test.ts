import assert from "node:assert/strict";
import { test } from "node:test";
import { DnsLookupError, DnsResolver } from "../../kernel/net/dns.ts";
import { Ipv4Interface } from "../../kernel/net/iface/interface.ts";
import { PROTOCOL_UDP, formatIpv4, parseIpv4 as ip } from "../../kernel/net/ip.ts";
import { UdpLayer } from "../../kernel/net/socket/udp.ts";
import type { DnsMessage, DnsRecord } from "../../kernel/net/wire/dns.ts";
import {
  DNS_CLASS_IN, DNS_RCODE_NAME_ERROR, DNS_TYPE_A, DNS_TYPE_CNAME, emitDns, emitDnsQuery, parseDns, readDnsName,
} from "../../kernel/net/wire/dns.ts";
import { captured } from "./net-captures.ts";
import { createLink } from "./net-helpers.ts";

const dnsPayload = (frame: Uint8Array): Uint8Array => frame.subarray(42);

test("dns wire: our query encoder produces exactly the captured query bytes", () => {
  assert.deepEqual(emitDnsQuery(0x1234, "www.torito.test"), dnsPayload(captured.dnsQueryWww));
  assert.deepEqual(emitDnsQuery(0x1235, "alias.torito.test."), dnsPayload(captured.dnsQueryAlias));
});

test("dns wire: captured dnsmasq answers parse, following compression pointers", () => {
  const www = parseDns(dnsPayload(captured.dnsResponseWww));
  assert.ok(typeof www !== "string");
  assert.equal(www.id, 0x1234);
  assert.equal(www.answers[0]!.name, "www.torito.test"); // a pointer to offset 12
  assert.equal(formatIpv4(www.answers[0]!.address!), "10.9.0.80");

  const alias = parseDns(dnsPayload(captured.dnsResponseAlias));
  assert.ok(typeof alias !== "string");
  assert.equal(alias.answers[0]!.type, DNS_TYPE_CNAME);
  assert.equal(alias.answers[0]!.target, "www.torito.test");
  assert.equal(alias.answers[1]!.name, "www.torito.test"); // a pointer into the CNAME's RDATA
  assert.equal(alias.answers[1]!.address, ip("10.9.0.80"));

  const nope = parseDns(dnsPayload(captured.dnsResponseNope));
  assert.ok(typeof nope !== "string");
  assert.equal(nope.rcode, DNS_RCODE_NAME_ERROR);
});

test("dns wire: compression loops, forward pointers and overlong names are rejected", () => {
  const header = [0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
  // A pointer to itself.
  assert.equal(parseDns(new Uint8Array([...header, 0xc0, 12, 0, 1, 0, 1])), "dns-bad-pointer");
  // A label followed by a pointer back to that label: a loop through a backward pointer.
  assert.equal(readDnsName(new Uint8Array([...header, 1, 0x61, 0xc0, 12]), 12), "dns-name-too-long");
  // Two pointers pointing at each other.
  assert.equal(readDnsName(new Uint8Array([...header, 0xc0, 14, 0xc0, 12]), 12), "dns-bad-pointer");
  assert.equal(readDnsName(new Uint8Array([...header, 0xc0, 14, 0xc0, 12]), 14), "dns-bad-pointer");
  // A name longer than 255 bytes.
  const long: number[] = [];
  for (let i = 0; i < 5; i++) long.push(63, ...new Array<number>(63).fill(0x61));
  long.push(0);
  assert.equal(readDnsName(new Uint8Array([...header, ...long]), 12), "dns-name-too-long");
  // Reserved label types, truncation, and counts that promise more than the bytes hold.
  assert.equal(readDnsName(new Uint8Array([...header, 0x40, 0]), 12), "dns-bad-label");
  assert.equal(readDnsName(new Uint8Array([...header, 5, 0x61]), 12), "dns-truncated");
  assert.equal(parseDns(new Uint8Array([0, 1, 0x81, 0x80, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])), "dns-truncated");
  // An A record whose RDATA is not 4 bytes.
  const bad = dnsPayload(captured.dnsResponseWww).slice();
  bad[bad.length - 5] = 3;
  assert.equal(parseDns(bad.subarray(0, bad.length - 1)), "dns-bad-record");
});

type Zone = Record<string, DnsRecord[] | "nxdomain">;

/** A resolver on 10.0.2.15 and a scripted server on 10.0.2.3 answering from `zone`. */
function setup(zone: Zone, options: { silent?: () => boolean } = {}) {
  const link = createLink();
  const clientIface = new Ipv4Interface(link.a);
  const serverIface = new Ipv4Interface(link.b);
  clientIface.configure({ address: ip("10.0.2.15"), prefixLength: 24, gateway: ip("10.0.2.2") }, 0);
  serverIface.configure({ address: ip("10.0.2.3"), prefixLength: 24, gateway: 0 }, 0);
  const clientUdp = new UdpLayer(clientIface);
  const serverUdp = new UdpLayer(serverIface);
  clientIface.register(PROTOCOL_UDP, clientUdp);
  serverIface.register(PROTOCOL_UDP, serverUdp);
  const server = serverUdp.bind(53);
  let seed = 7;
  const resolver = new DnsResolver(clientUdp, {
    servers: [ip("10.0.2.3")],
    random: () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31),
  });
  const questions: string[] = [];
  const run = async (now: number): Promise<void> => {
    for (let round = 0; round < 10; round++) {
      link.deliver();
      serverIface.poll(now);
      for (let d = server.receive(); d; d = server.receive()) {
        const query = parseDns(d.data);
        if (typeof query === "string") continue;
        const name = query.questions[0]!.name;
        questions.push(name);
        if (options.silent?.()) continue;
        const entry = zone[name];
        const reply: DnsMessage = {
          ...query, response: true, recursionAvailable: true, rcode: entry === "nxdomain" ? DNS_RCODE_NAME_ERROR : 0,
          answers: entry === "nxdomain" || entry === undefined ? [] : entry,
        };
        const bytes = emitDns(reply);
        assert.ok(typeof bytes !== "string");
        server.sendTo(d.source, d.sourcePort, bytes);
      }
      link.deliver();
      clientIface.poll(now);
      resolver.poll(now);
      await Promise.resolve();
    }
  };
  return { resolver, run, questions };
}

const a = (name: string, address: string, ttl = 300): DnsRecord =>
  ({ name, type: DNS_TYPE_A, class: DNS_CLASS_IN, ttl, data: new Uint8Array(0), address: ip(address) });
const cname = (name: string, target: string, ttl = 300): DnsRecord =>
  ({ name, type: DNS_TYPE_CNAME, class: DNS_CLASS_IN, ttl, data: new Uint8Array(0), target });

test("resolver: an A lookup resolves, is cached for its TTL, and re-queried after", async () => {
  const s = setup({ "example.com": [a("example.com", "93.184.216.34", 60)] });
  const first = s.resolver.lookup("Example.COM.");
  await s.run(0);
  assert.deepEqual(await first, [ip("93.184.216.34")]);
  assert.deepEqual(await s.resolver.lookup("example.com"), [ip("93.184.216.34")]);
  assert.equal(s.questions.length, 1);
  assert.equal(s.resolver.counters.cacheHits, 1);
  await s.run(60_000);
  const again = s.resolver.lookup("example.com");
  await s.run(60_001);
  await again;
  assert.equal(s.questions.length, 2);
});

test("resolver: CNAME chains are followed, within the answer and by asking again", async () => {
  const s = setup({
    "www.shop.test": [cname("www.shop.test", "shop.cdn.test", 30), cname("shop.cdn.test", "edge.cdn.test", 600), a("edge.cdn.test", "10.1.1.1", 120)],
    "alias.test": [cname("alias.test", "elsewhere.test")],
    "elsewhere.test": [a("elsewhere.test", "10.2.2.2")],
    "loop.test": [cname("loop.test", "loop2.test"), cname("loop2.test", "loop.test")],
  });
  const chain = s.resolver.lookup("www.shop.test");
  const requery = s.resolver.lookup("alias.test");
  const loop = s.resolver.lookup("loop.test");
  await s.run(0);
  assert.deepEqual(await chain, [ip("10.1.1.1")]);
  assert.deepEqual(await requery, [ip("10.2.2.2")]);
  await assert.rejects(loop, (error: DnsLookupError) => error.reason === "cname-loop");
  assert.deepEqual(s.questions.sort(), ["alias.test", "elsewhere.test", "loop.test", "www.shop.test"]);
  // The chain is cached for its smallest TTL (30 s).
  await s.run(29_999);
  await s.resolver.lookup("www.shop.test");
  assert.equal(s.questions.length, 4);
  await s.run(30_000);
  const later = s.resolver.lookup("www.shop.test");
  await s.run(30_001);
  await later;
  assert.equal(s.questions.length, 5);
});

test("resolver: NXDOMAIN rejects with not-found; a silent server times out after 3 attempts", async () => {
  let silent = false;
  const s = setup({ "missing.test": "nxdomain" }, { silent: () => silent });
  const missing = s.resolver.lookup("missing.test");
  await s.run(0);
  await assert.rejects(missing, (error: DnsLookupError) => error.reason === "not-found");
  silent = true;
  const lost = s.resolver.lookup("slow.test");
  let rejected = false;
  lost.catch(() => { rejected = true; });
  await s.run(0);
  assert.equal(s.resolver.pollAt(), 2000);
  await s.run(2000);
  await s.run(4000);
  assert.equal(rejected, false);
  await s.run(6000);
  await assert.rejects(lost, (error: DnsLookupError) => error.reason === "timeout");
  assert.equal(s.questions.filter((q) => q === "slow.test").length, 3);
  assert.equal(s.resolver.pollAt(), Infinity);
});

test("resolver: address literals resolve without a query; no servers is an error", async () => {
  const s = setup({});
  assert.deepEqual(await s.resolver.lookup("10.0.2.2"), [ip("10.0.2.2")]);
  s.resolver.setServers([]);
  await assert.rejects(s.resolver.lookup("example.com"), (error: DnsLookupError) => error.reason === "no-servers");
  assert.equal(s.questions.length, 0);
});
