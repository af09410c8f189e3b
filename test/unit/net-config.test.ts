import assert from "node:assert/strict";
import { test } from "node:test";
import { parseCmdline } from "../../kernel/cmdline.ts";
import { applyNetworkConfig, parseNetworkConfig } from "../../kernel/net/config.ts";
import { DnsResolver } from "../../kernel/net/dns.ts";
import { Ipv4Interface } from "../../kernel/net/iface/interface.ts";
import { PROTOCOL_UDP, parseIpv4 as ip } from "../../kernel/net/ip.ts";
import { UdpLayer } from "../../kernel/net/socket/udp.ts";
import { createLink } from "./net-helpers.ts";

const config = (line: string) => parseNetworkConfig(parseCmdline(line).options);

test("static configuration from torito.ip / torito.gw / torito.dns", () => {
  assert.deepEqual(config("console=ttyS0 torito.ip=10.0.2.15/24 torito.gw=10.0.2.2 torito.dns=10.0.2.3 -- app"), {
    mode: "static", address: ip("10.0.2.15"), prefixLength: 24, gateway: ip("10.0.2.2"), dnsServers: [ip("10.0.2.3")],
  });
  assert.deepEqual(config("torito.ip=192.168.1.9 torito.dns=1.1.1.1,8.8.8.8"), {
    mode: "static", address: ip("192.168.1.9"), prefixLength: 24, gateway: 0, dnsServers: [ip("1.1.1.1"), ip("8.8.8.8")],
  });
});

test("no torito.ip, or torito.ip=dhcp, means DHCP", () => {
  assert.deepEqual(config("console=ttyS0 -- torito.ip=1.2.3.4"), { mode: "dhcp" });
  assert.deepEqual(config("torito.ip=dhcp"), { mode: "dhcp" });
});

test("malformed options are reported, naming the option", () => {
  for (const [line, option] of [
    ["torito.ip=10.0.2.300/24", "torito.ip"],
    ["torito.ip=10.0.2.15/33", "torito.ip"],
    ["torito.ip=10.0.2.15/24/1", "torito.ip"],
    ["torito.ip=0.0.0.0", "torito.ip"],
    ["torito.ip=10.0.2.15 torito.gw=gateway", "torito.gw"],
    ["torito.ip=10.0.2.15 torito.dns=10.0.2.3,x", "torito.dns"],
    ["torito.gw=10.0.2.2", "torito.gw"],
  ] as const) {
    const result = config(line);
    assert.equal(result.mode, "error", line);
    assert.ok(result.mode === "error" && result.message.startsWith(option), line);
  }
});

test("applying a configuration: static configures at once; DHCP starts a client", () => {
  const link = createLink();
  const iface = new Ipv4Interface(link.a);
  const udp = new UdpLayer(iface);
  iface.register(PROTOCOL_UDP, udp);
  const resolver = new DnsResolver(udp);
  const stack = { iface, udp, resolver };
  const staticConfig = config("torito.ip=10.0.2.15/24 torito.gw=10.0.2.2 torito.dns=10.0.2.3");
  assert.ok(staticConfig.mode === "static");
  assert.equal(applyNetworkConfig(staticConfig, stack, 0), null);
  assert.equal(iface.address, ip("10.0.2.15"));
  assert.equal(iface.gateway, ip("10.0.2.2"));

  const link2 = createLink();
  const iface2 = new Ipv4Interface(link2.a);
  const udp2 = new UdpLayer(iface2);
  iface2.register(PROTOCOL_UDP, udp2);
  const client = applyNetworkConfig({ mode: "dhcp" }, { iface: iface2, udp: udp2, resolver: new DnsResolver(udp2) }, 0);
  assert.ok(client);
  assert.equal(client.state, "selecting");
  assert.equal(link2.a.transmitted.length, 1);
});

test("several cores: one torito.ip serves every core, a list gives core i the i-th, the rest use DHCP", () => {
  const opts = (line: string) => parseCmdline(line).options;
  const one = opts("torito.ip=10.0.2.15/24 torito.gw=10.0.2.2");
  assert.deepEqual([0, 1].map((c) => (parseNetworkConfig(one, c) as { address: number }).address), [0x0a00020f, 0x0a00020f]);
  const list = opts("torito.ip=10.77.0.2/24,10.77.1.2/24 torito.gw=10.77.0.1");
  assert.equal((parseNetworkConfig(list, 0) as { address: number }).address, 0x0a4d0002);
  assert.equal((parseNetworkConfig(list, 1) as { address: number }).address, 0x0a4d0102);
  assert.deepEqual(parseNetworkConfig(list, 2), { mode: "dhcp" });
  assert.match((parseNetworkConfig(opts("torito.ip=10.77.0.2/24,bad"), 1) as { message: string }).message, /bad address "bad"/);
});
