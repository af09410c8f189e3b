/**
 * The Devices unit: finds the virtio-mmio devices of this VM and hands out their drivers.
 *
 * Nothing happens at boot: hello pays nothing. The first call of any API here runs
 * discovery (the command line's virtio_mmio.device= entries, else a probe of the microvm
 * window), and a driver is started (feature negotiation, queues: a few dozen register
 * accesses, ~30 µs each) the first time its device is asked for. discoveryStats() says what
 * that cost.
 *
 * Every device belongs to one core (Toro's dedicated devices): `torito.owner.<kind>=…` on
 * the command line says which (torito run passes it), else device i of a kind goes to core
 * i mod count. A core sees every device in list() but drives only its own: blk.open(0) is
 * this core's first disk, the network unit takes this core's first NIC, and a device's
 * interrupt is routed to its owner. Each core discovers on its own (reads only); nothing
 * is shared between the cores' drivers.
 */
import { hw } from "../hw.ts";
import { parseCmdline } from "../cmdline.ts";
import { deviceOwner, devicesFromCmdline, probeWindow, MICROVM_ACPI_MMIO_SLOTS, type DeviceLocation } from "./discovery.ts";
import { VirtioMmioTransport } from "./virtio/mmio.ts";
import type { VirtioDriver } from "./virtio/driver.ts";
import { VirtioBlk, type BlockDevice } from "./virtio/blk.ts";
import { VirtioConsole, type ConsoleDevice } from "./virtio/console.ts";
import { VirtioRng } from "./virtio/rng.ts";
import { readFwCfgFile } from "./fwcfg.ts";
import { createCrypto, type ToritoCrypto } from "./random.ts";
import { cores } from "../process/cores.ts";
import { idleStats, onBeforeExit, setIdleSpin } from "../process/scheduler.ts";

export type { BlockDevice } from "./virtio/blk.ts";
export type { ConsoleDevice } from "./virtio/console.ts";

/** Device kinds by virtio device id (virtio 1.2 §5). */
export type DeviceKind = "net" | "blk" | "console" | "rng" | "balloon" | "9p" | "gpu" | "input" | "vsock" | "fs" | "unknown";

const KINDS: Record<number, DeviceKind> = { 1: "net", 2: "blk", 3: "console", 4: "rng", 5: "balloon", 9: "9p", 16: "gpu", 18: "input", 19: "vsock", 26: "fs" };

/** What devices.list() reports for one device. */
export interface DeviceInfo {
  kind: DeviceKind;
  /** The virtio device id (§5). */
  deviceId: number;
  /** Base address of its virtio-mmio registers. */
  mmio: number;
  /** Its IOAPIC input (GSI), or -1 when it is polled only. */
  irq: number;
  /** The core that owns it. */
  core: number;
  /** virtio-mmio version: 1 legacy, 2 modern. */
  transportVersion: number;
  /** Whether a driver has started on it. */
  active: boolean;
  /** Negotiated feature bits (empty until a driver starts). */
  features: number[];
  /** Why the device was disabled, or null. */
  error: string | null;
  /** A multiqueue NIC (`torito.net.mq=N`): the queue pair each core uses (core i: pair i,
   *  receiveq 2i, transmitq 2i+1); null for other devices. */
  queuePairs: { core: number; pair: number; rxQueue: number; txQueue: number }[] | null;
}

interface Entry {
  transport: VirtioMmioTransport;
  kind: DeviceKind;
  /** The core that owns it. */
  core: number;
  driver: VirtioDriver | null;
  /** Claimed by a driver outside this file (e.g. virtio-net). */
  claimed: boolean;
  error: string | null;
}

let entries: Entry[] | null = null;
const thisCore = cores.id;
const coreCount = cores.count;
const stats = { discoveryMs: 0, probed: false, fromCmdline: 0, warnings: [] as string[] };

function discover(): Entry[] {
  if (entries !== null) return entries;
  const start = hw.now();
  const cmdline = parseCmdline(hw.cmdline());
  const { devices: listed, errors } = devicesFromCmdline(cmdline.kernel);
  stats.warnings.push(...errors);
  let locations: DeviceLocation[] = listed;
  stats.fromCmdline = listed.length;
  if (listed.length === 0) {
    stats.probed = true;
    locations = probeWindow(hw.mmioRead32);
    // acpi=on (several CPUs): 24 slots filled from the top, interrupts on the second IOAPIC.
    if (locations.length === 0) locations = probeWindow(hw.mmioRead32, MICROVM_ACPI_MMIO_SLOTS);
  }
  entries = [];
  const perKind = new Map<DeviceKind, number>();
  for (const loc of locations) {
    try {
      if (!VirtioMmioTransport.present(loc.base)) continue;
      const t = new VirtioMmioTransport(loc.base, loc.irq);
      if (t.deviceId === 0) continue;
      const kind = KINDS[t.deviceId] ?? "unknown";
      const index = perKind.get(kind) ?? 0;
      perKind.set(kind, index + 1);
      const owner = deviceOwner(cmdline.options, kind, index, coreCount);
      let core = 0;
      let error: string | null = null;
      if (typeof owner === "string") error = owner;
      else core = owner;
      if (error !== null && thisCore === 0) stats.warnings.push(error);
      entries.push({ transport: t, kind, core, driver: null, claimed: false, error });
    } catch (e) {
      stats.warnings.push(`virtio-mmio@0x${loc.base.toString(16)}: ${(e as Error).message}`);
    }
  }
  stats.discoveryMs = hw.now() - start;
  return entries;
}

/** This core's devices of `kind`, in discovery order. */
function ofKind(kind: DeviceKind): Entry[] {
  return discover().filter((e) => e.kind === kind && e.core === thisCore);
}

/** Starts (once) the driver of `entry`; null when it failed to start. */
function start<D extends VirtioDriver>(entry: Entry, make: (t: VirtioMmioTransport) => D): D | null {
  if (entry.driver !== null) return entry.driver as D;
  if (entry.error !== null || entry.claimed) return null;
  try {
    const driver = make(entry.transport);
    entry.driver = driver;
    return driver;
  } catch (e) {
    entry.error = (e as Error).message;
    entry.transport.fail();
    return null;
  }
}

/**
 * Claims this core's `index`-th device of `kind` for a driver living outside this unit (the
 * virtio-net driver): returns its transport, or null when there is none or it is taken.
 */
export function claimDevice(kind: DeviceKind, index = 0): VirtioMmioTransport | null {
  const entry = ofKind(kind)[index];
  if (entry === undefined || entry.claimed || entry.driver !== null || entry.error !== null) return null;
  entry.claimed = true;
  return entry.transport;
}

/**
 * The transport of the `index`-th device of `kind` whoever owns it, unclaimed: a core that
 * drives one queue pair of a multiqueue NIC another core owns reads its config space and
 * writes its queues' QueueNotify, nothing else.
 */
export function sharedDevice(kind: DeviceKind, index = 0): VirtioMmioTransport | null {
  const entry = discover().filter((e) => e.kind === kind)[index];
  if (entry === undefined || entry.error !== null) return null;
  entry.claimed = true; // in this core's list(): active (this core drives a part of it)
  return entry.transport;
}

/** Queue pairs of the multiqueue NIC (`torito.net.mq=N`, one per core 0..N-1), or 0 when there is none. */
export function multiqueuePairs(): number {
  const text = parseCmdline(hw.cmdline()).options.get("torito.net.mq");
  if (text === undefined || !/^\d+$/.test(text)) return 0;
  return Math.min(Number(text), coreCount);
}

/** Flushes this core's started virtio console (exit() calls it before powering off). */
export function flushConsole(): void {
  const entry = entries?.find((e) => e.kind === "console" && e.core === thisCore);
  if (entry !== undefined && entry.driver !== null) (entry.driver as VirtioConsole).flush(1000);
}

/** How many devices of `kind` this core owns (runs discovery; starts no driver). */
export function ownedCount(kind: DeviceKind): number {
  return ofKind(kind).length;
}

/** The block devices API of `torito`. */
export const blk = {
  /** Number of virtio-blk devices this core owns. */
  count(): number {
    return ofKind("blk").length;
  },
  /** This core's `index`-th block device (default the first); throws when there is none or it failed. */
  open(index = 0): BlockDevice {
    const entry = ofKind("blk")[index];
    if (entry === undefined) {
      const total = discover().filter((e) => e.kind === "blk").length;
      throw new Error(total > index && coreCount > 1
        ? `core ${thisCore} owns no virtio-blk device #${index} (devices.list() shows the owners)`
        : `no virtio-blk device #${index} (run with --disk FILE)`);
    }
    const driver = start(entry, (t) => new VirtioBlk(t));
    if (driver === null) throw new Error(`virtio-blk device #${index} is unusable: ${entry.error}`);
    return driver;
  },
};

/** The devices API of `torito`. */
export const devices = {
  /** Every virtio device of this VM (highest MMIO address first: the VMM's order), with its owner core. */
  list(): DeviceInfo[] {
    const pairs = multiqueuePairs();
    let firstNet = true;
    return discover().map((e) => {
      const mq = pairs > 1 && e.kind === "net" && firstNet;
      if (e.kind === "net") firstNet = false;
      const features: number[] = [];
      if (e.driver !== null) for (let bit = 0; bit < 64; bit++) if (e.transport.has(bit)) features.push(bit);
      return {
        kind: e.kind,
        deviceId: e.transport.deviceId,
        mmio: e.transport.base,
        irq: e.transport.irq,
        core: e.core,
        transportVersion: e.transport.version,
        active: e.driver !== null || e.claimed,
        features,
        error: e.driver?.broken?.message ?? e.error,
        queuePairs: mq ? Array.from({ length: pairs }, (_, i) => ({ core: i, pair: i, rxQueue: 2 * i, txQueue: 2 * i + 1 })) : null,
      };
    });
  },
  /**
   * Poll-policy and cost figures of this core: discovery time, how often the core halted
   * because every device was idle for the spin period, interrupts taken by its devices,
   * QueueNotify writes.
   */
  stats(): { discoveryMs: number; probed: boolean; halts: number; interrupts: number; notifications: number; spinMs: number; entropy: string } {
    discover();
    const idle = idleStats();
    let notifications = 0;
    for (const e of entries!) {
      if (e.driver === null || e.core !== thisCore) continue;
      notifications += e.driver.notifications();
    }
    return { discoveryMs: stats.discoveryMs, probed: stats.probed, halts: idle.halts, interrupts: idle.interruptsHandled, notifications, spinMs: idle.spinMs, entropy: seedSource };
  },
  /** Sets how long (ms) the core keeps polling idle devices before halting until their interrupt (default 2). */
  setIdleSpin(ms: number): void {
    setIdleSpin(ms);
  },
  /** This core's virtio console, or null when it owns none. */
  console(): ConsoleDevice | null {
    const entry = ofKind("console")[0];
    if (entry === undefined) return null;
    const started = entry.driver !== null;
    const driver = start(entry, (t) => new VirtioConsole(t));
    // Output still in the transmit queue must reach the host before the VM powers off
    // (QEMU consumes it during the notify; a VMM with an I/O thread may not have yet).
    if (driver !== null && !started) onBeforeExit(() => (driver.flush(1000), false));
    return driver;
  },
};

/**
 * Hook for the kernel console: a function writing to the virtio console when the command
 * line lists one (costs one driver start on first call), else null so the kernel keeps the
 * UART. Never probes the window: apps without devices pay nothing.
 */
export function virtioConsoleWriter(): ((data: string | Uint8Array) => void) | null {
  if (entries === null && !/virtio_mmio\.device=/.test(hw.cmdline())) return null;
  const c = devices.console();
  return c === null ? null : (data) => c.write(data);
}

/** Discovery cost and findings, for diagnostics and benchmarks. */
export function discoveryStats(): { discoveryMs: number; probed: boolean; fromCmdline: number; warnings: string[] } {
  return { ...stats, warnings: [...stats.warnings] };
}

let seedSource = "";

/** Where the CSPRNG seed came from ("fw_cfg", "virtio-rng", both joined by "+", or "tsc-jitter"), "" before first use. */
export function entropySource(): string {
  return seedSource;
}

/** The fw_cfg file holding the boot seeds `torito run` passes (host/run.ts): SEED_BYTES per core, core i's at i * SEED_BYTES. */
const BOOT_SEED_FILE = "opt/torito/seed";
const SEED_BYTES = 32;

/**
 * 32+ bytes to seed this core's CSPRNG, from every source the VMM gives: the boot seed in
 * fw_cfg (two port writes: `torito run` always passes it) and virtio-rng when attached
 * (`--rng`: ~1.5 ms to start the device); with neither, TSC jitter (with a warning).
 */
function entropySeed(): Uint8Array {
  const parts: Uint8Array[] = [];
  const sources: string[] = [];
  const boot = readFwCfgFile(BOOT_SEED_FILE);
  if (boot !== null && boot.length >= (thisCore + 1) * SEED_BYTES) {
    parts.push(boot.slice(thisCore * SEED_BYTES, (thisCore + 1) * SEED_BYTES));
    sources.push("fw_cfg");
  } else if (boot !== null) {
    stats.warnings.push(`fw_cfg ${BOOT_SEED_FILE}: ${boot.length} bytes, none for core ${thisCore}`);
  }
  boot?.fill(0); // the other cores' seeds do not stay in this core's heap
  const entry = ofKind("rng")[0];
  if (entry !== undefined) {
    const rng = start(entry, (t) => new VirtioRng(t));
    if (rng !== null) {
      try {
        parts.push(rng.readSync(48));
        sources.push("virtio-rng");
      } catch (e) {
        stats.warnings.push((e as Error).message);
      }
    }
  }
  if (parts.length > 0) {
    seedSource = sources.join("+");
    if (parts.length === 1) return parts[0]!;
    // ChaChaRng folds a longer seed into its key by XOR: the sources add up, none can weaken another.
    const seed = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      seed.set(p, at);
      at += p.length;
    }
    return seed;
  }
  seedSource = "tsc-jitter";
  hw.write("torito: warning: no boot seed (fw_cfg) and no virtio-rng device; crypto is seeded from timer jitter only (boot with `torito run`, or attach --rng)\n");
  // Timing of a loop that reads the clock: interrupts, VM exits and cache effects make the
  // low bits vary. Weak, but different on every boot.
  const seed = new Uint8Array(64);
  let prev = hw.rdtsc();
  for (let i = 0; i < 2048; i++) {
    const now = hw.rdtsc();
    const delta = now - prev;
    prev = now;
    seed[i % 64] = (seed[i % 64]! * 31 + (delta & 0xff) + ((now / 256) & 0xff)) & 0xff;
  }
  const wall = hw.epochMs();
  for (let i = 0; i < 8; i++) seed[i]! ^= (wall / 2 ** (8 * i)) & 0xff;
  return seed;
}

/** The global `crypto` (installed by kernel/init.ts), seeded on first use. */
export const crypto: ToritoCrypto = createCrypto(entropySeed);

export { openNetDevice, openNetQueuePair, type VirtioNet, type VirtioNetQueuePair, type NetOffload } from "./virtio/net.ts";
