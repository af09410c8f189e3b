/**
 * The network configuration from the kernel command line:
 *   torito.ip=10.0.2.15/24 torito.gw=10.0.2.2 torito.dns=10.0.2.3[,10.0.2.4]   (static)
 *   torito.ip=dhcp, or no torito.ip at all                                       (DHCP)
 * With several cores each core configures its own NIC: one torito.ip applies to every core
 * (QEMU's user networks all hand out 10.0.2.15), a list `torito.ip=A/24,B/24` gives core i
 * the i-th entry, and cores beyond the list use DHCP.
 */
import { DhcpClient, describeLease } from "./dhcp.ts";
import type { DnsResolver } from "./dns.ts";
import type { Ipv4Interface } from "./iface/interface.ts";
import { parseIpv4 } from "./ip.ts";
import type { UdpLayer } from "./socket/udp.ts";

/** How the interface gets its address. */
export type NetworkConfig =
  | { mode: "static"; address: number; prefixLength: number; gateway: number; dnsServers: number[] }
  | { mode: "dhcp" };

/** A command line whose network options make no sense; the message names the option. */
export interface NetworkConfigError {
  mode: "error";
  message: string;
}

/** Prefix length used when torito.ip has none. */
export const DEFAULT_PREFIX_LENGTH = 24;

function address(text: string): number | null {
  try {
    return parseIpv4(text);
  } catch {
    return null;
  }
}

/** Reads torito.ip / torito.gw / torito.dns for core `core` from the parsed kernel options (see kernel/cmdline.ts). */
export function parseNetworkConfig(options: ReadonlyMap<string, string>, core = 0): NetworkConfig | NetworkConfigError {
  let ip = options.get("torito.ip");
  if (ip !== undefined && ip.includes(",")) {
    ip = ip.split(",")[core];
    if (ip === undefined) return { mode: "dhcp" };
  }
  const gw = options.get("torito.gw");
  const dns = options.get("torito.dns");
  if (ip === undefined || ip === "dhcp") {
    if (gw !== undefined) return { mode: "error", message: "torito.gw needs a static torito.ip" };
    return { mode: "dhcp" };
  }
  const [addressText, prefixText, ...rest] = ip.split("/");
  const value = address(addressText!);
  if (value === null || value === 0 || rest.length > 0) return { mode: "error", message: `torito.ip: bad address "${ip}"` };
  let prefixLength = DEFAULT_PREFIX_LENGTH;
  if (prefixText !== undefined) {
    if (!/^\d{1,2}$/.test(prefixText) || Number(prefixText) > 32) return { mode: "error", message: `torito.ip: bad prefix length "${ip}"` };
    prefixLength = Number(prefixText);
  }
  let gateway = 0;
  if (gw !== undefined) {
    const parsed = address(gw);
    if (parsed === null) return { mode: "error", message: `torito.gw: bad address "${gw}"` };
    gateway = parsed;
  }
  const dnsServers: number[] = [];
  if (dns !== undefined && dns !== "") {
    for (const part of dns.split(",")) {
      const parsed = address(part);
      if (parsed === null) return { mode: "error", message: `torito.dns: bad address "${part}"` };
      dnsServers.push(parsed);
    }
  }
  return { mode: "static", address: value, prefixLength, gateway, dnsServers };
}

/** The parts of the stack a configuration is applied to. */
export interface ConfigurableStack {
  iface: Ipv4Interface;
  udp: UdpLayer;
  resolver: DnsResolver;
}

/**
 * Applies a configuration: a static one configures the interface and the resolver at once;
 * DHCP starts a client (returned: the glue must poll it) whose leases do the same.
 */
export function applyNetworkConfig(config: NetworkConfig, stack: ConfigurableStack, now: number,
  log: (line: string) => void = () => {}): DhcpClient | null {
  const { iface, udp, resolver } = stack;
  if (config.mode === "static") {
    iface.configure(config, now);
    resolver.setServers(config.dnsServers);
    return null;
  }
  const client = new DhcpClient(udp, iface.mac, {
    onLease: (lease) => {
      if (iface.address !== lease.address) log(`net: DHCP lease ${describeLease(lease)}`);
      iface.configure(lease);
      resolver.setServers(lease.dnsServers);
    },
    onLeaseLost: () => {
      log("net: DHCP lease lost");
      iface.configure(null);
    },
  });
  client.start(now);
  return client;
}
