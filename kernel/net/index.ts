/**
 * The network unit of this core: one network device, its IPv4 interface, UDP, TCP, DHCP
 * and DNS, driven by the scheduler. It comes up on first use (boot time is not spent on a
 * network an app never touches) and runs only while something holds it: a listening
 * server, an open connection, a bound UDP socket or a pending lookup. When nothing does,
 * its poller leaves and the VM can power off as Node would.
 *
 * Configuration comes from the kernel command line (kernel/net/config.ts): static
 * (`torito.ip=10.0.2.15/24 torito.gw=10.0.2.2 torito.dns=10.0.2.3`, which `torito run`
 * passes for QEMU's user network) or DHCP.
 */
import { parseCmdline } from "../cmdline.ts";
import { multiqueuePairs, openNetDevice, openNetQueuePair, ownedCount } from "../devices/index.ts";
import { hw } from "../hw.ts";
import { cores } from "../process/cores.ts";
import { ephemeralRange, MultiqueueSteering } from "./multiqueue.ts";
import { addPoller } from "../process/scheduler.ts";
import { applyNetworkConfig, parseNetworkConfig } from "./config.ts";
import type { DhcpClient } from "./dhcp.ts";
import type { NetDevice } from "./device.ts";
import { DnsResolver } from "./dns.ts";
import { Ipv4Interface } from "./iface/interface.ts";
import { formatIpv4, parseIpv4, PROTOCOL_TCP, PROTOCOL_UDP } from "./ip.ts";
import { TcpStack } from "./socket/tcp.ts";
import { TcpSockets, type TcpServer, type TcpSocket } from "./socket/tcp-api.ts";
import { UdpLayer } from "./socket/udp.ts";
import { TextEncoder } from "../encoding.ts";
import type { ByteStream, StreamListener } from "./stream.ts";

/** A network device that polls itself (delivers frames from a poller of its own) while a receive handler is installed, as the virtio driver does. */
export type DrivableNetDevice = NetDevice;

interface Stack {
  device: DrivableNetDevice;
  iface: Ipv4Interface;
  udp: UdpLayer;
  tcp: TcpStack;
  sockets: TcpSockets;
  resolver: DnsResolver;
  dhcp: DhcpClient | null;
}

let stack: Stack | null = null;
/** Cores sharing this core's multiqueue NIC (kernel/net/multiqueue.ts), or 0 without one. */
const mqPairs = ((): number => {
  try {
    const pairs = multiqueuePairs();
    return pairs > 1 && cores.id < pairs ? pairs : 0;
  } catch {
    return 0; // on Node without native bindings
  }
})();
let findDevice: (() => DrivableNetDevice | null) | null = () => {
  try {
    if (mqPairs > 0 && cores.id > 0) return openNetQueuePair(cores.id);
    return openNetDevice(0, mqPairs > 0 ? { queuePairs: mqPairs } : {});
  } catch (e) {
    if (mqPairs > 0) console.error(`net: ${(e as Error).message}`);
    return null;
  }
};
/** The interface's own receive handler (receiveHandler wraps it with steering on a multiqueue NIC). */
let stackReceive: ((frame: Uint8Array, checksumVerified?: boolean) => void) | null = null;
/** Frames between the cores sharing a multiqueue NIC (kernel/net/multiqueue.ts). */
const steering = mqPairs > 0 ? new MultiqueueSteering(cores.id, mqPairs, (frame, verified) => stackReceive?.(frame, verified)) : null;
/** The interface's receive handler, installed on the device only while the unit is held. */
let receiveHandler: ((frame: Uint8Array, checksumVerified?: boolean) => void) | null = null;
let holds = 0;
let removePoller: (() => void) | null = null;
let wakeup: ReturnType<typeof setTimeout> | null = null;
let wakeupAt = Infinity;
/** The earliest deadline the last pass found (what pollAt() would say while nothing runs). */
let idleUntil = -Infinity;

/** Called by the devices unit: how to find this core's network device. */
export function setNetDeviceFinder(finder: () => DrivableNetDevice | null): void {
  findDevice = finder;
}

function randomBytes(n: number): Uint8Array {
  const bytes = new Uint8Array(n);
  const c = (globalThis as { crypto?: { getRandomValues(a: Uint8Array): Uint8Array } }).crypto;
  if (c) c.getRandomValues(bytes);
  else for (let i = 0; i < n; i++) bytes[i] = (Math.random() * 256) | 0;
  return bytes;
}

function up(): Stack {
  if (stack) return stack;
  const device = findDevice?.() ?? null;
  if (!device) {
    const core = cores.count > 1 ? `core ${cores.id} owns` : "the VM has";
    throw new Error(`networking: ${core} no network device (run with \`torito run --port HOST:GUEST[@CORE]\` or \`--net tap:NAME[@CORE]\`)`);
  }
  const now = hw.now();
  // The interface sees a device whose receive handler this unit installs and removes:
  // the driver keeps the VM alive (it polls) exactly while a handler is installed.
  const gated: NetDevice = {
    mac: device.mac,
    mtu: device.mtu,
    // Bound, not arrows: no interpreter frame of their own per frame sent.
    txBuffer: device.txBuffer.bind(device),
    transmit: device.transmit.bind(device),
    setReceiveHandler: (handler) => {
      stackReceive = handler;
      receiveHandler = handler !== null && steering !== null ? steering.receive : handler;
      if (holds > 0) device.setReceiveHandler(receiveHandler);
    },
    poll: () => device.poll(), // unused by poll() below: the driver polls itself
    // Segmentation offload, asked each time: a multiqueue pair learns it when its driver starts.
    get largeSend() { return device.largeSend ?? 0; },
    ...(device.transmitSegmented !== undefined ? { transmitSegmented: device.transmitSegmented.bind(device) } : {}),
  };
  const iface = new Ipv4Interface(gated);
  // Cores sharing one address pick local ports from disjoint slices (kernel/net/multiqueue.ts).
  const ephemeral = mqPairs > 0 ? ephemeralRange(cores.id, mqPairs) : undefined;
  const udp = new UdpLayer(iface, ephemeral);
  const tcp = new TcpStack(iface, { isnSecret: randomBytes(16), ...(ephemeral ? { ephemeralFirst: ephemeral.first, ephemeralCount: ephemeral.count } : {}) });
  iface.register(PROTOCOL_UDP, udp);
  iface.register(PROTOCOL_TCP, tcp);
  const random = () => {
    const b = randomBytes(4);
    return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
  };
  const resolver = new DnsResolver(udp, { random: () => random() / 2 ** 32 });
  let config = parseNetworkConfig(parseCmdline(hw.cmdline()).options, cores.id);
  if (config.mode === "error") {
    console.error(`net: ${config.message}; using DHCP`);
    config = { mode: "dhcp" };
  }
  const dhcp = applyNetworkConfig(config, { iface, udp, resolver }, now, (line) => console.log(line));
  stack = { device, iface, udp, tcp, sockets: new TcpSockets(tcp, () => hw.now()), resolver, dhcp };
  // The address's ARP announcement (or the first DHCP message) leaves now, not when this
  // stretch of JavaScript ends: a service usually logs that it listens right after, and the
  // serial console takes ~45 µs a byte here. Announced, the guest is known to the first
  // client's path (QEMU's user network would otherwise ask for it with an ARP request).
  device.flush?.();
  return stack;
}

// Core 0 starts a multiqueue NIC even if its own app never uses the network: the other
// cores' queue pairs start only when it hands them over.
if (mqPairs > 0 && cores.id === 0) {
  queueMicrotask(() => {
    try {
      up();
    } catch {
      // findDevice() said why
    }
  });
}

/**
 * One pass over the stack; false when idle. The driver's own poller delivers frames (and
 * reclaims transmit buffers), so this pass does not poll the device again: it runs what the
 * stack queued for itself (looped-back packets, TCP output) and the timers that are due.
 * It runs before the driver's poller in each pass (`first`): the frames delivered next are
 * stamped with this pass's clock (not the last pass's, which is stale by a whole halt after
 * one), and what the previous pass's frames produced (answers, ACKs) is on its way to the
 * device before new frames are taken.
 */
function poll(_vectors: number, now: number, quiet: boolean): boolean {
  const s = stack!;
  // Nothing ran since the last pass found the stack idle: only its next deadline can make
  // work. The interface's clock still advances, for the frames the driver delivers next.
  if (quiet && now < idleUntil) {
    s.iface.setClock(now);
    return false;
  }
  s.iface.pollLocal(now);
  const dhcp = s.dhcp;
  if (dhcp !== null) dhcp.poll(now);
  const resolver = s.resolver;
  resolver.poll(now);
  s.tcp.poll(now);
  s.device.flush?.();
  // The earliest deadline, compared by hand (Math.min is a native call).
  let next = s.iface.pollAt();
  let at: number;
  if (dhcp !== null) {
    at = dhcp.pollAt();
    if (at < next) next = at;
  }
  at = resolver.nextDeadline;
  if (at < next) next = at;
  at = s.tcp.pollAt();
  if (at < next) next = at;
  idleUntil = next;
  if (next <= now) return true;
  // A deadline in the future: make sure a halted core wakes for it.
  if (next !== wakeupAt) {
    if (wakeup) clearTimeout(wakeup);
    wakeup = Number.isFinite(next) ? setTimeout(() => undefined, Math.max(0, next - now)) : null;
    wakeup?.unref();
    wakeupAt = next;
  }
  return false;
}

/** Keeps the network unit running until the returned release function is called. */
function hold(): () => void {
  const s = up();
  if (holds++ === 0) {
    // The driver arms its own interrupt when idle; this poller has nothing to arm.
    removePoller = addPoller(poll, { onIdle: () => false, first: true });
    s.device.setReceiveHandler(receiveHandler);
    steering?.start();
  }
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    if (--holds === 0) {
      removePoller?.();
      removePoller = null;
      steering?.stop();
      stack?.device.setReceiveHandler(null);
    }
  };
}

function byteStream(socket: TcpSocket, release: () => void): ByteStream {
  let released = false;
  const done = () => {
    if (!released) {
      released = true;
      release();
    }
  };
  socket.onReadFailure = done; // a cancelled read leaves the connection usable: no call then
  // The socket's own methods, bound rather than wrapped: a request's read and write are no
  // JavaScript frame longer than the socket's.
  return {
    remoteAddress: formatIpv4(socket.remoteAddress),
    remotePort: socket.remotePort,
    read: socket.read.bind(socket),
    readWith: socket.readWith.bind(socket),
    readIntoWith: socket.readIntoWith.bind(socket),
    cancelRead: socket.cancelRead.bind(socket),
    write: socket.write.bind(socket),
    tryWrite: socket.tryWrite.bind(socket),
    end: socket.end.bind(socket),
    close: () => {
      socket.close();
      done();
    },
  };
}

/** Listens for TCP connections on `port` (0 = ephemeral). */
export function listen(port: number, options: { backlog?: number } = {}): StreamListener {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`bad port ${String(port)}`);
  const release = hold();
  let server: TcpServer;
  try {
    server = stack!.sockets.listen(port, options);
  } catch (e) {
    release();
    throw e;
  }
  let closed = false;
  return {
    port: server.port,
    accept: async () => {
      if (closed) return null;
      try {
        const socket = await server.accept();
        return byteStream(socket, hold());
      } catch (e) {
        if (closed) return null;
        throw e;
      }
    },
    close: () => {
      if (closed) return;
      closed = true;
      server.close();
      release();
    },
  };
}

/**
 * Resolves once this core's interface has an address (at once with a static
 * configuration; after the DHCP exchange otherwise). Rejects after `timeoutMs`.
 */
export async function ready(timeoutMs = 10_000): Promise<void> {
  const release = hold();
  try {
    const deadline = hw.now() + timeoutMs;
    // A core's queue pair of a multiqueue NIC starts when the owner core hands it over.
    while (stack!.iface.address === 0 || (stack!.device as { ready?: boolean }).ready === false) {
      if (hw.now() > deadline) {
        if ((stack!.device as { ready?: boolean }).ready === false) {
          throw new Error(`networking: core ${cores.id}'s queue pair of the multiqueue NIC did not start within ${timeoutMs} ms (see core 0's errors)`);
        }
        throw new Error(`networking: no address after ${timeoutMs} ms (is a DHCP server there?)`);
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  } finally {
    release();
  }
}

/** Opens a TCP connection to `host` (a dotted IPv4 address or a name resolved by DNS). */
export async function connect(host: string, port: number): Promise<ByteStream> {
  const release = hold();
  try {
    await ready();
    const address = /^\d+\.\d+\.\d+\.\d+$/.test(host) ? parseIpv4(host) : (await stack!.resolver.lookup(host))[0]!;
    const socket = await stack!.sockets.connect(address, port);
    return byteStream(socket, release);
  } catch (e) {
    release();
    throw e;
  }
}

/** Resolves a host name to IPv4 addresses (dotted strings). */
export async function resolve(name: string): Promise<string[]> {
  const release = hold();
  try {
    await ready();
    return (await stack!.resolver.lookup(name)).map(formatIpv4);
  } finally {
    release();
  }
}

/** Addresses and counters of this core's interface, for diagnostics. */
/**
 * Whether this core has a network device to serve on (with several cores each core drives
 * its own NIC, if it was given one: `torito run --port HOST:GUEST@CORE`).
 */
export function available(): boolean {
  if (stack) return true;
  try {
    return ownedCount("net") > 0 || mqPairs > 0;
  } catch {
    return false; // on Node without native bindings
  }
}

export function networkInfo(): { address: string; mac: string; counters: unknown } | null {
  if (!stack) return null;
  const mac = [...stack.device.mac].map((b) => b.toString(16).padStart(2, "0")).join(":");
  return {
    address: formatIpv4(stack.iface.address), mac,
    counters: { ...stack.iface.counters, drops: stack.iface.drops, tcp: stack.tcp.counters, ...(steering !== null ? { steering: { ...steering.counters } } : {}) },
  };
}

/** A datagram received on a UDP socket. */
export interface Datagram {
  data: Uint8Array;
  address: string;
  port: number;
}

/** A bound UDP socket (`net.udp(port)`); the VM stays up while it is open. */
export interface UdpEndpoint {
  readonly port: number;
  /** Sends one datagram; false when it could not be queued (no address yet — see
   *  `net.ready()` — no buffer, or the neighbour queue is full). */
  send(address: string, port: number, data: Uint8Array | string): boolean;
  /** The next datagram, or null once the socket is closed. */
  receive(): Promise<Datagram | null>;
  close(): void;
}

/** Binds a UDP socket on `port` (0 = an ephemeral port). */
export function udp(port = 0): UdpEndpoint {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`bad port ${String(port)}`);
  const release = hold();
  let socket;
  try {
    socket = stack!.udp.bind(port);
  } catch (e) {
    release();
    throw e;
  }
  const bound = socket;
  const waiters: ((d: Datagram | null) => void)[] = [];
  let closed = false;
  const take = (): Datagram | null => {
    const d = bound.receive();
    return d ? { data: d.data, address: formatIpv4(d.source), port: d.sourcePort } : null;
  };
  bound.onReadable = () => {
    while (waiters.length > 0) {
      const d = take();
      if (!d) break;
      waiters.shift()!(d);
    }
  };
  return {
    port: bound.port,
    send: (address, toPort, data) => {
      if (closed) throw new Error("udp: socket is closed");
      const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
      return bound.sendTo(parseIpv4(address), toPort, bytes);
    },
    receive: () => {
      if (closed) return Promise.resolve(null);
      const d = take();
      return d ? Promise.resolve(d) : new Promise((resolve) => waiters.push(resolve));
    },
    close: () => {
      if (closed) return;
      closed = true;
      bound.close();
      for (const w of waiters.splice(0)) w(null);
      release();
    },
  };
}
