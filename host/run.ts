/**
 * `torito run`: checks an image, builds the QEMU microvm command line and runs it, translating
 * the guest's isa-debug-exit value back into this process's exit code.
 *
 * Exit codes: the guest's own code (0..127), 1 when QEMU itself fails, 2 for usage errors,
 * 70 when the guest stops without an exit code (triple fault, reset, KVM emulation failure),
 * 124 on --timeout, 128+n when the CLI is killed by signal n (130 SIGINT, 143 SIGTERM), or
 * when QEMU is (QEMU exits cleanly on SIGTERM/SIGINT/SIGHUP and says so; a SIGKILL is exit 1).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants, existsSync, fstatSync, mkdtempSync, openSync, closeSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from "node:fs";
import { Socket } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join, resolve } from "node:path";

/** An error in what the user typed or pointed at: one line on stderr, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A failure while doing the work (build, QEMU start): one line on stderr, exit code 1. */
export class ToolError extends Error {
  override name = "ToolError";
}

export type Accel = "kvm" | "tcg";

/** One `--port` forward: TCP connections to host `address:hostPort` reach guest port `guestPort`. */
export interface PortForward {
  address: string;
  hostPort: number;
  guestPort: number;
  /** The core whose user-network NIC carries it (`@CORE`; default 0). */
  core?: number;
}

/** Everything `qemuArgs` needs; `runImage` fills `virtiofsSocket` when `fsDir` is set. */
export interface RunOptions {
  image: string;
  memBytes: number;
  cpus: number;
  accel: Accel;
  timeoutSec?: number;
  ports: PortForward[];
  fsDir?: string;
  /** Raw virtio-blk disks (`--disk FILE[:ro][@CORE]`, repeatable), in order. */
  disks?: DiskImage[];
  /** File receiving the guest's virtio-console output (`--console FILE`). */
  consoleFile?: string;
  /** Attach a virtio-rng device fed from the host's /dev/urandom (`--rng`). */
  rng?: boolean;
  /** Modern virtio-mmio transport (version 2) instead of QEMU's legacy default (`--virtio-modern`). */
  virtioModern?: boolean;
  /** Relative memory share of each core (`--mem-weights 1,3`), passed as `torito.mem_weights=`. */
  memWeights?: number[];
  /** A raw QEMU `-netdev` backend for the virtio-net device, without `id=` (`--netdev SPEC`,
   *  e.g. `dgram,local.type=inet,...` for tests); excludes `ports`. */
  netdev?: string;
  /** Host tap devices, one NIC each (`--net tap:NAME[@CORE]`, repeatable); excludes `ports` and `netdev`. */
  taps?: TapDevice[];
  /** Static guest address `A.B.C.D/N` (`--ip`), passed as `torito.ip=`; without it a tap or
   *  raw netdev guest uses DHCP. Not with `ports` (QEMU's user network is fixed). A list
   *  `A/N,B/N` gives core i the i-th address. */
  ip?: string;
  /** Default gateway (`--gw`), passed as `torito.gw=`; needs `ip`. */
  gateway?: string;
  /** DNS servers (`--dns A[,B]`), passed as `torito.dns=`; needs `ip`. */
  dns?: string[];
  appArgs: string[];
  /** Path of the vhost-user socket served by virtiofsd (required when fsDir is set). */
  virtiofsSocket?: string;
  /** A file of BOOT_SEED_BYTES random bytes per core that the guest reads at boot through
   *  fw_cfg (`opt/torito/seed`) to seed its CSPRNG; `runImage` writes a fresh one. */
  seedFile?: string;
}

/** fw_cfg name of the boot seeds (kernel/devices/index.ts reads it). */
export const BOOT_SEED_NAME = "opt/torito/seed";
/** Seed bytes per core. */
export const BOOT_SEED_BYTES = 32;

/**
 * Writes fresh boot seeds for `cpus` cores from the host's CSPRNG into `dir` (which should be
 * private to this user: QEMU reads the file when it starts) and returns the file's path.
 */
export function writeBootSeed(dir: string, cpus: number): string {
  const path = join(dir, "seed");
  writeFileSync(path, randomBytes(BOOT_SEED_BYTES * cpus), { mode: 0o600 });
  return path;
}

/** A raw disk image attached as a virtio-blk device. */
export interface DiskImage {
  path: string;
  /** Read-only (`:ro`): the guest sees VIRTIO_BLK_F_RO. */
  readOnly: boolean;
  /** The core that owns it (`@CORE`; default: the disk's position mod --cpus, the guest's rule). */
  core?: number;
}

/** A tap device QEMU opens by name (it must exist or be creatable by the caller, e.g. root). */
export interface TapDevice {
  ifname: string;
  /** virtio-net headers on the tap (checksum offload between guest and host); default on. */
  vnetHdr: boolean;
  /** The core that owns this NIC (`@CORE`; default: the tap's position among the --net options). */
  core?: number;
  /** Multiqueue (`,mq`): one NIC for the whole VM with one queue pair per core, each core
   *  with its own TCP/IP stack on the shared address. Needs a `multi_queue` tap. */
  mq?: boolean;
}

export const QEMU_BINARY = "qemu-system-x86_64";
/** Kernel options for QEMU's user-mode network (see kernel/net/config.ts). */
export const USER_NET_OPTIONS = ["torito.ip=10.0.2.15/24", "torito.gw=10.0.2.2", "torito.dns=10.0.2.3"];
export const VIRTIOFSD_BINARY = "/usr/lib/qemu/virtiofsd";
/** virtio-fs tag of the `--fs` share; the guest mounts the device with this tag. */
export const VIRTIOFS_TAG = "fs0";
export const DEFAULT_MEM_BYTES = 64 * 1024 * 1024;
export const MIN_MEM_BYTES = 2 * 1024 * 1024;
export const MAX_MEM_BYTES = 3 * 1024 * 1024 * 1024;
/** Heap the image needs beyond its last loaded byte. */
export const MIN_HEAP_BYTES = 1024 * 1024;
export const MAX_CPUS = 16;

export const EXIT_QEMU_FAILED = 1;
export const EXIT_USAGE = 2;
/** The guest stopped without writing an exit code (triple fault, reset, emulation failure). */
export const EXIT_GUEST_STOPPED = 70;
export const EXIT_TIMEOUT = 124;

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;

/**
 * Parses a memory size: plain bytes or a K/M/G suffix, case-insensitive, optionally followed by
 * "iB" or "B" (all binary: 1K = 1024). Returns bytes; throws UsageError when malformed.
 */
export function parseSize(text: string, what = "size"): number {
  const match = /^(\d+)(?:([kmg])(?:i?b)?|b)?$/i.exec(text.trim());
  if (!match) throw new UsageError(`bad ${what} '${text}' (expected e.g. 64M, 1G, 8388608)`);
  const scale = { k: KIB, m: MIB, g: GIB }[(match[2] ?? "").toLowerCase() as "k" | "m" | "g"] ?? 1;
  const bytes = Number(match[1]) * scale;
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`bad ${what} '${text}' (too large)`);
  return bytes;
}

/** Parses and range-checks `--mem`: 2 MiB ..= 3 GiB, a multiple of 4 KiB. */
export function parseMem(text: string): number {
  const bytes = parseSize(text, "--mem");
  if (bytes < MIN_MEM_BYTES || bytes > MAX_MEM_BYTES) {
    throw new UsageError(`bad --mem '${text}' (must be between 2M and 3G)`);
  }
  if (bytes % (4 * KIB) !== 0) throw new UsageError(`bad --mem '${text}' (must be a multiple of 4K)`);
  return bytes;
}

/** Parses a whole number in [min, max] for the named flag. */
export function parseIntInRange(text: string, flag: string, min: number, max: number): number {
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new UsageError(`bad ${flag} '${text}' (expected a whole number from ${min} to ${max})`);
  }
  return Number(text);
}

/** Parses `--timeout S`: a positive number of seconds (decimals allowed). */
export function parseTimeout(text: string): number {
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(text) || Number(text) <= 0) {
    throw new UsageError(`bad --timeout '${text}' (expected a positive number of seconds)`);
  }
  return Number(text);
}

/** Splits a trailing `@CORE` (a core index) off a device option. */
function splitCore(text: string, flag: string): { spec: string; core?: number } {
  const match = /^(.*)@(\d{1,2})$/.exec(text);
  if (match === null) {
    if (text.includes("@")) throw new UsageError(`bad ${flag} '${text}' (a suffix @CORE names a core: @0, @1, ...)`);
    return { spec: text };
  }
  if (Number(match[2]) >= MAX_CPUS) throw new UsageError(`bad ${flag} '${text}' (core ${match[2]}: at most ${MAX_CPUS} cores)`);
  return { spec: match[1]!, core: Number(match[2]) };
}

/** Parses `--port [ADDR:]HOST:GUEST[@CORE]` (TCP; ADDR defaults to 127.0.0.1, CORE to 0). */
export function parsePort(text: string): PortForward {
  const { spec, core } = splitCore(text, "--port");
  const match = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d+):(\d+)$/.exec(spec);
  const valid = (port: string | undefined) => port !== undefined && /^\d{1,5}$/.test(port) && Number(port) >= 1 && Number(port) <= 65535;
  if (!match || !valid(match[2]) || !valid(match[3])) {
    throw new UsageError(`bad --port '${text}' (expected HOST:GUEST with ports 1..65535, e.g. 8080:80)`);
  }
  return { address: match[1] ?? "127.0.0.1", hostPort: Number(match[2]), guestPort: Number(match[3]), ...(core !== undefined ? { core } : {}) };
}

/** Parses `--net tap:NAME[,vnet_hdr=off][,mq][@CORE]` (Linux interface names: 1..15 of [A-Za-z0-9_.-]). */
export function parseNet(text: string): TapDevice {
  const { spec, core } = splitCore(text, "--net");
  const [head, ...flags] = spec.split(",");
  if (flags.includes("mq") && !head!.startsWith("tap:")) {
    throw new UsageError(`bad --net '${text}': multiqueue needs a tap (tap:NAME,mq); QEMU's user network has one queue`);
  }
  const match = /^tap:([A-Za-z0-9_.-]{1,15})$/.exec(head!);
  const known = flags.every((f) => /^vnet_hdr=(on|off)$/.test(f) || f === "mq") && new Set(flags.map((f) => f.split("=")[0])).size === flags.length;
  if (!match || !known || match[1] === "." || match[1] === "..") {
    throw new UsageError(`bad --net '${text}' (expected tap:NAME with an interface name of 1..15 letters, digits, '_', '.', '-', optionally ,vnet_hdr=off and ,mq)`);
  }
  const mq = flags.includes("mq");
  if (mq && core !== undefined) throw new UsageError(`bad --net '${text}': a multiqueue NIC takes no @CORE (it gives every core a queue pair)`);
  return { ifname: match[1]!, vnetHdr: !flags.includes("vnet_hdr=off"), ...(core !== undefined ? { core } : {}), ...(mq ? { mq } : {}) };
}

/**
 * Checks a multiqueue tap (`--net tap:NAME,mq`) against the rest of the options: it is the
 * VM's only NIC, the VM has several cores, and there is one static address for all of them.
 */
export function checkMultiqueue(o: Pick<RunOptions, "taps" | "cpus" | "ip">): void {
  const taps = o.taps ?? [];
  const mq = taps.find((t) => t.mq === true);
  if (mq === undefined) return;
  const flag = `--net tap:${mq.ifname},mq`;
  if (taps.length > 1) throw new UsageError(`${flag} gives every core a queue pair of one NIC; use it alone (no other --net)`);
  if (o.cpus < 2) throw new UsageError(`${flag} needs --cpus 2 or more (one queue pair per core); with one core use --net tap:${mq.ifname}`);
  if (o.ip === undefined) throw new UsageError(`${flag} needs a static --ip A.B.C.D/N: every core shares the address (DHCP would run on every core)`);
  if (o.ip.includes(",")) throw new UsageError(`${flag} takes one --ip address: every core shares it`);
}

/** Linux's IFF_MULTI_QUEUE in /sys/class/net/NAME/tun_flags. */
const IFF_MULTI_QUEUE = 0x100;

/**
 * For `--net tap:NAME,mq`: an existing tap created without multi_queue makes QEMU fail
 * with a terse "could not configure /dev/net/tun"; say what to do instead. (A tap that does
 * not exist yet is created by QEMU with as many queues as asked, when it may.)
 */
export function checkMultiqueueTap(tap: TapDevice, sysfs = "/sys/class/net"): void {
  if (tap.mq !== true) return;
  let flags: number;
  try {
    flags = Number(readFileSync(join(sysfs, tap.ifname, "tun_flags"), "utf8").trim());
  } catch {
    return;
  }
  if ((flags & IFF_MULTI_QUEUE) === 0) {
    throw new UsageError(`--net tap:${tap.ifname},mq: tap ${tap.ifname} is not multiqueue (create it with 'ip tuntap add ${tap.ifname} mode tap multi_queue')`);
  }
}

/** Parses `--disk FILE[:ro][@CORE]`. */
export function parseDisk(text: string): DiskImage {
  const { spec, core } = splitCore(text, "--disk");
  if (spec === "" || spec === ":ro") throw new UsageError(`bad --disk '${text}' (expected FILE, FILE:ro, optionally @CORE)`);
  const readOnly = spec.endsWith(":ro");
  return { path: readOnly ? spec.slice(0, -3) : spec, readOnly, ...(core !== undefined ? { core } : {}) };
}

/** Parses `--mem-weights W0,W1,...`: one positive whole number per core. */
export function parseMemWeights(text: string, cpus: number): number[] {
  const weights = text.split(",");
  if (weights.length !== cpus || !weights.every((w) => /^[1-9]\d{0,5}$/.test(w))) {
    throw new UsageError(`bad --mem-weights '${text}' (expected ${cpus} positive whole numbers separated by commas, one per --cpus)`);
  }
  return weights.map(Number);
}

/** One virtio-net device: its QEMU -netdev backend (without id=) and the core that owns it. */
export interface NicPlan {
  backend: string;
  core: number;
  /** Multiqueue: the queue pairs (one per core; the device gets mq=on). */
  queuePairs?: number;
}

/**
 * The NICs of a run, in QEMU command-line order (which is the guest's discovery order):
 * one user-network NIC per core named by --port (its forwards), then the taps, then the
 * raw --netdev. A core drives one NIC; throws UsageError for a second one or a core the VM
 * does not have.
 */
export function nicPlan(o: Pick<RunOptions, "ports" | "taps" | "netdev" | "cpus">): NicPlan[] {
  const nics: NicPlan[] = [];
  const portCores = [...new Set(o.ports.map((p) => p.core ?? 0))].sort((a, b) => a - b);
  for (const core of portCores) {
    const forwards = o.ports.filter((p) => (p.core ?? 0) === core).map((p) => `hostfwd=tcp:${p.address}:${p.hostPort}-:${p.guestPort}`);
    nics.push({ backend: ["user", ...forwards].join(","), core });
  }
  (o.taps ?? []).forEach((tap, i) => {
    const queues = tap.mq === true ? [`queues=${o.cpus}`] : [];
    const backend = ["tap", `ifname=${tap.ifname}`, "script=no", "downscript=no", ...(tap.vnetHdr ? ["vnet_hdr=on"] : []), ...queues].join(",");
    nics.push({ backend, core: tap.core ?? i, ...(tap.mq === true ? { queuePairs: o.cpus } : {}) });
  });
  if (o.netdev !== undefined) nics.push({ backend: o.netdev, core: 0 });
  const owners = new Set<number>();
  for (const nic of nics) {
    if (nic.core >= o.cpus) throw new UsageError(`a network device is placed on core ${nic.core}, but the VM has ${o.cpus} (--cpus)`);
    if (owners.has(nic.core)) throw new UsageError(`core ${nic.core} would get two network devices; a core drives one (place them with @CORE)`);
    owners.add(nic.core);
  }
  return nics;
}

/** Parses a dotted IPv4 address for `flag`; 0.0.0.0 and 255.255.255.255 are refused. */
export function parseIpv4Address(text: string, flag: string): string {
  const parts = text.split(".");
  const ok = parts.length === 4 && parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255);
  if (!ok || text === "0.0.0.0" || text === "255.255.255.255") {
    throw new UsageError(`bad ${flag} '${text}' (expected an IPv4 address such as 10.77.0.1)`);
  }
  return text;
}

/** Parses `--ip A.B.C.D/N` (prefix length 1..32 required). */
export function parseCidr(text: string): string {
  const match = /^([^/]+)\/(\d{1,2})$/.exec(text);
  if (!match || Number(match[2]) < 1 || Number(match[2]) > 32) {
    throw new UsageError(`bad --ip '${text}' (expected ADDRESS/PREFIX such as 10.77.0.2/24)`);
  }
  try {
    parseIpv4Address(match[1]!, "--ip");
  } catch {
    throw new UsageError(`bad --ip '${text}' (the address is not a usable IPv4 address; expected e.g. 10.77.0.2/24)`);
  }
  return `${match[1]}/${Number(match[2])}`;
}

/** Parses `--accel` (or TORITO_ACCEL). */
export function parseAccel(text: string, flag = "--accel"): Accel {
  if (text !== "kvm" && text !== "tcg") throw new UsageError(`bad ${flag} '${text}' (expected kvm or tcg)`);
  return text;
}

/**
 * Quotes one app argument for the kernel command line (kernel/cmdline.ts parses it): arguments
 * that are empty, contain whitespace, quotes or backslashes, or start with `virtio_mmio.` (which
 * the kernel would take for the options QEMU appends) are wrapped in double quotes with `\"` and
 * `\\` escaped.
 */
export function quoteKernelArg(arg: string): string {
  if (arg !== "" && !/[\s"'\\]/.test(arg) && !arg.startsWith("virtio_mmio.")) return arg;
  return `"${arg.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** Quotes an argv for a POSIX shell, leaving plainly safe words bare. */
export function shellQuote(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ");
}

/** Escapes a value for a QEMU `key=value,...` option list (commas are doubled). */
function qemuOptValue(value: string): string {
  return value.replace(/,/g, ",,");
}

function qemuMemSize(bytes: number): string {
  return bytes % MIB === 0 ? `${bytes / MIB}M` : `${bytes / KIB}K`;
}

/**
 * The kernel command line: `torito.accel=… -- app args…`. QEMU microvm (acpi=off) appends
 * `virtio_mmio.device=…` entries after it; the kernel strips unquoted ones from the end.
 */
export function kernelCommandLine(accel: Accel, appArgs: readonly string[], kernelOptions: readonly string[] = []): string {
  const opts = [`torito.accel=${accel}`, ...kernelOptions, "--", ...appArgs.map(quoteKernelArg)];
  return opts.join(" ");
}

/** The QEMU arguments (without the binary) for the given options. */
export function qemuArgs(o: RunOptions): string[] {
  const acpi = o.cpus > 1 ? "on" : "off";
  const rtc = o.accel === "tcg" ? "on" : "off"; // no kvmclock under TCG: wall time comes from the CMOS RTC
  const machine = [`microvm`, `x-option-roms=off`, `rtc=${rtc}`, `acpi=${acpi}`];
  if (o.fsDir !== undefined) machine.push("memory-backend=mem");
  const args = [
    "-M", machine.join(","),
    "-accel", o.accel,
    "-m", qemuMemSize(o.memBytes),
    "-smp", String(o.cpus),
    "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
    // With -nodefaults, microvm creates its ISA serial (0x3f8, IRQ 4) only when a serial
    // backend is given, so this option is what makes the console exist at all.
    "-serial", "stdio",
    "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
  ];
  if (o.fsDir !== undefined) {
    if (o.virtiofsSocket === undefined) throw new Error("qemuArgs: fsDir needs virtiofsSocket");
    args.push(
      "-object", `memory-backend-memfd,id=mem,size=${qemuMemSize(o.memBytes)},share=on`,
      "-chardev", `socket,id=fs0,path=${qemuOptValue(o.virtiofsSocket)}`,
      "-device", `vhost-user-fs-device,chardev=fs0,tag=${VIRTIOFS_TAG}`,
    );
  }
  const nics = nicPlan(o);
  nics.forEach((nic, i) => {
    const [type, ...rest] = nic.backend.split(",");
    args.push("-netdev", [type, `id=net${i}`, ...rest].join(","), "-device", `virtio-net-device,netdev=net${i}${nic.queuePairs !== undefined ? ",mq=on" : ""}`);
  });
  // libvhost-user (virtiofsd) refuses legacy virtio devices ("virtio legacy devices aren't
  // supported by libvhost-user"), so a virtio-fs share needs the modern transport.
  if (o.virtioModern || o.fsDir !== undefined) args.push("-global", "virtio-mmio.force-legacy=false");
  const disks = o.disks ?? [];
  disks.forEach((disk, i) => {
    args.push(
      "-drive", `file=${qemuOptValue(resolve(disk.path))},format=raw,if=none,id=disk${i}${disk.readOnly ? ",readonly=on" : ""}`,
      "-device", `virtio-blk-device,drive=disk${i}`,
    );
  });
  if (o.consoleFile !== undefined) {
    args.push(
      "-chardev", `file,id=vcon0,path=${qemuOptValue(resolve(o.consoleFile))}`,
      "-device", "virtio-serial-device", "-device", "virtconsole,chardev=vcon0",
    );
  }
  // Boot seeds through fw_cfg: QEMU reads the file at start-up, so the seed never appears on
  // a command line, and the guest reads it with two port writes instead of starting a device.
  if (o.seedFile !== undefined) args.push("-fw_cfg", `name=${BOOT_SEED_NAME},file=${qemuOptValue(resolve(o.seedFile))}`);
  if (o.rng) {
    // One per core: each core seeds its own CSPRNG from its own device (device i -> core i).
    for (let i = 0; i < o.cpus; i++) {
      args.push("-object", `rng-random,id=rng${i},filename=/dev/urandom`, "-device", `virtio-rng-device,rng=rng${i}`);
    }
  }
  // QEMU's user network is fixed (10.0.2.15, gateway 10.0.2.2, DNS 10.0.2.3): configure it
  // statically so the guest answers its first connection without waiting for DHCP.
  const kernelOptions = o.ports.length > 0 ? [...USER_NET_OPTIONS] : staticNetOptions(o);
  if (o.cpus > 1 && nics.length > 0) kernelOptions.push(`torito.owner.net=${nics.map((n) => n.core).join(",")}`);
  const mq = nics.find((n) => n.queuePairs !== undefined);
  if (mq !== undefined) kernelOptions.push(`torito.net.mq=${mq.queuePairs}`);
  if (o.cpus > 1 && disks.some((d) => d.core !== undefined)) {
    kernelOptions.push(`torito.owner.blk=${disks.map((d, i) => d.core ?? i % o.cpus).join(",")}`);
  }
  if (o.memWeights !== undefined) kernelOptions.push(`torito.mem_weights=${o.memWeights.join(",")}`);
  args.push("-kernel", resolve(o.image), "-append", kernelCommandLine(o.accel, o.appArgs, kernelOptions));
  return args;
}

/** Kernel options for `--ip`/`--gw`/`--dns` (none: the guest uses DHCP). */
export function staticNetOptions(o: Pick<RunOptions, "ip" | "gateway" | "dns">): string[] {
  if (o.ip === undefined) return [];
  const opts = [`torito.ip=${o.ip}`];
  if (o.gateway !== undefined) opts.push(`torito.gw=${o.gateway}`);
  if (o.dns !== undefined && o.dns.length > 0) opts.push(`torito.dns=${o.dns.join(",")}`);
  return opts;
}

/** The virtiofsd arguments (without the binary) serving `dir` on `socket`. */
export function virtiofsdArgs(dir: string, socket: string): string[] {
  return [`--socket-path=${socket}`, "-o", `source=${resolve(dir)}`, "-o", "cache=auto"];
}

/** What `runImage` learned from the ELF image. */
export interface ImageInfo {
  /** Highest physical address + 1 of any PT_LOAD segment. */
  loadEnd: number;
  /** PVH entry point from the XEN_ELFNOTE_PHYS32_ENTRY note. */
  pvhEntry: number;
}

const PT_LOAD = 1;
const PT_NOTE = 4;
const XEN_ELFNOTE_PHYS32_ENTRY = 18;

/** Reads the ELF header, program headers and notes; throws UsageError unless it is a PVH x86-64 ELF. */
export function inspectImage(path: string): ImageInfo {
  let fd: number;
  try {
    if (!statSync(path).isFile()) throw new UsageError(`image '${path}' is not a file`);
    fd = openSync(path, "r");
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`image '${path}' not found (build one with: torito build <app.ts> -o ${path})`);
  }
  try {
    const read = (offset: number, length: number): Buffer => {
      const buf = Buffer.alloc(length);
      const n = readSync(fd, buf, 0, length, offset);
      if (n !== length) throw new UsageError(`image '${path}' is truncated`);
      return buf;
    };
    const header = Buffer.alloc(64);
    const got = readSync(fd, header, 0, 64, 0);
    if (got < 64 || header.readUInt32BE(0) !== 0x7f454c46) throw new UsageError(`image '${path}' is not an ELF file`);
    if (header[4] !== 2 || header[5] !== 1 || header.readUInt16LE(18) !== 62) {
      throw new UsageError(`image '${path}' is not an x86-64 ELF (64-bit little-endian, EM_X86_64)`);
    }
    const phoff = Number(header.readBigUInt64LE(32));
    const phentsize = header.readUInt16LE(54);
    const phnum = header.readUInt16LE(56);
    if (phnum === 0 || phentsize < 56) throw new UsageError(`image '${path}' has no program headers`);
    let loadEnd = 0;
    let pvhEntry: number | undefined;
    for (let i = 0; i < phnum; i++) {
      const ph = read(phoff + i * phentsize, 56);
      const type = ph.readUInt32LE(0);
      if (type === PT_LOAD) {
        const end = Number(ph.readBigUInt64LE(24)) + Number(ph.readBigUInt64LE(40));
        loadEnd = Math.max(loadEnd, end);
      } else if (type === PT_NOTE) {
        const notes = read(Number(ph.readBigUInt64LE(8)), Number(ph.readBigUInt64LE(32)));
        pvhEntry ??= findPvhEntry(notes);
      }
    }
    if (pvhEntry === undefined) {
      throw new UsageError(`image '${path}' has no PVH entry note (Xen note type 18); is it a torito image?`);
    }
    return { loadEnd, pvhEntry };
  } finally {
    closeSync(fd);
  }
}

function findPvhEntry(notes: Buffer): number | undefined {
  const align4 = (n: number) => (n + 3) & ~3;
  for (let at = 0; at + 12 <= notes.length; ) {
    const namesz = notes.readUInt32LE(at);
    const descsz = notes.readUInt32LE(at + 4);
    const type = notes.readUInt32LE(at + 8);
    const nameAt = at + 12;
    const descAt = nameAt + align4(namesz);
    if (descAt + descsz > notes.length) return undefined;
    const name = notes.toString("latin1", nameAt, nameAt + namesz).replace(/\0+$/, "");
    if (name === "Xen" && type === XEN_ELFNOTE_PHYS32_ENTRY && (descsz === 4 || descsz === 8)) {
      return descsz === 8 ? Number(notes.readBigUInt64LE(descAt)) : notes.readUInt32LE(descAt);
    }
    at = descAt + align4(descsz);
  }
  return undefined;
}

/** Refuses memory sizes that cannot hold the image plus a minimal heap. */
export function checkImageFits(info: ImageInfo, memBytes: number, imagePath: string): void {
  if (info.loadEnd + MIN_HEAP_BYTES > memBytes) {
    const needMib = Math.ceil((info.loadEnd + MIN_HEAP_BYTES) / MIB);
    throw new UsageError(`--mem ${qemuMemSize(memBytes)} is too small for '${imagePath}' (image ends at ${(info.loadEnd / MIB).toFixed(1)} MiB; needs at least ${needMib}M)`);
  }
}

/** Finds an executable on PATH, or undefined. */
export function findOnPath(name: string, pathEnv = process.env["PATH"] ?? ""): string | undefined {
  for (const dir of pathEnv.split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Whether /dev/kvm can be opened read-write (the check QEMU's -accel kvm needs first). */
export function kvmUsable(): { ok: true } | { ok: false; reason: string } {
  try {
    closeSync(openSync("/dev/kvm", "r+"));
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: (e as NodeJS.ErrnoException).code ?? String(e) };
  }
}

/**
 * The accelerator to use when `--accel` is absent: TORITO_ACCEL if set, else kvm when /dev/kvm
 * is usable, else tcg (calling `note` with a one-line explanation).
 */
export function defaultAccel(note: (line: string) => void, env = process.env): Accel {
  const forced = env["TORITO_ACCEL"];
  if (forced !== undefined && forced !== "") return parseAccel(forced, "TORITO_ACCEL");
  const kvm = kvmUsable();
  if (kvm.ok) return "kvm";
  note(`torito: note: /dev/kvm is not usable (${kvm.reason}); using tcg (software emulation, slower)`);
  return "tcg";
}

/** Validates the image and options that need the file system; throws UsageError. */
export function validateRunOptions(o: RunOptions): ImageInfo {
  const info = inspectImage(o.image);
  checkImageFits(info, o.memBytes, o.image);
  if (o.fsDir !== undefined) {
    if (!existsSync(o.fsDir) || !statSync(o.fsDir).isDirectory()) throw new UsageError(`--fs '${o.fsDir}' is not a directory`);
  }
  for (const disk of o.disks ?? []) {
    if (!existsSync(disk.path) || !statSync(disk.path).isFile()) throw new UsageError(`--disk '${disk.path}' is not a file`);
    try {
      accessSync(disk.path, disk.readOnly ? constants.R_OK : constants.R_OK | constants.W_OK);
    } catch {
      throw new UsageError(`--disk '${disk.path}' is not readable${disk.readOnly ? "" : " and writable"}`);
    }
    if (disk.core !== undefined && disk.core >= o.cpus) throw new UsageError(`--disk '${disk.path}' is placed on core ${disk.core}, but the VM has ${o.cpus} (--cpus)`);
  }
  for (const tap of o.taps ?? []) checkMultiqueueTap(tap);
  return info;
}

/** The command lines `--dry-run` prints: virtiofsd (when --fs is given, run in background) then QEMU. */
export function dryRunLines(o: RunOptions): string[] {
  const lines: string[] = [];
  const withSocket = { ...o };
  withSocket.seedFile ??= join(tmpdir(), "torito-run-XXXXXX", "seed");
  if (o.fsDir !== undefined) {
    withSocket.virtiofsSocket ??= join(tmpdir(), "torito-run-XXXXXX", "virtiofsd.sock");
    lines.push(`${shellQuote([VIRTIOFSD_BINARY, ...virtiofsdArgs(o.fsDir, withSocket.virtiofsSocket)])} &`);
  }
  lines.push(shellQuote([QEMU_BINARY, ...qemuArgs(withSocket)]));
  return lines;
}

/** Output sinks of `runImage` (stderr lines from torito and filtered QEMU stderr). */
export interface RunIo {
  stderr: (text: string) => void;
}

// QEMU's default CPU model asks for SSE3, which this host's KVM does not offer; harmless noise.
// With --cpus above the host's CPU count, KVM warns that it exceeds the recommended number.
const IGNORED_QEMU_STDERR = [/warning: host doesn't support requested feature/, /warning: Number of (SMP|hotpluggable) cpus requested/];
const SETPRIV = "/usr/bin/setpriv";
const KILL_GRACE_MS = 1000;

/**
 * Spawns a helper so that it dies with this process: in its own session (terminal signals
 * reach only the CLI, which forwards them) and, where util-linux setpriv exists, with a parent
 * death signal so it is SIGKILLed even if the CLI itself is SIGKILLed.
 */
function spawnTied(binary: string, args: string[], stdio: ("pipe" | "inherit" | "ignore" | number)[]): ChildProcess {
  const [cmd, argv] = existsSync(SETPRIV) ? [SETPRIV, ["--pdeathsig", "KILL", binary, ...args]] : [binary, args];
  return spawn(cmd, argv, { stdio, detached: true });
}

function killWithGrace(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), KILL_GRACE_MS);
  timer.unref();
  child.once("exit", () => clearTimeout(timer));
}

async function startVirtiofsd(dir: string, socket: string): Promise<ChildProcess> {
  if (!existsSync(VIRTIOFSD_BINARY)) throw new ToolError(`${VIRTIOFSD_BINARY} not found (needed for --fs): run \`npx torito setup\``);
  const child = spawnTied(VIRTIOFSD_BINARY, virtiofsdArgs(dir, socket), ["ignore", "ignore", "pipe"]);
  let log = "";
  child.stderr?.on("data", (chunk: Buffer) => (log += chunk.toString()));
  const deadline = Date.now() + 5000;
  while (!existsSync(socket)) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      const last = log.trim().split("\n").pop() ?? "";
      throw new ToolError(`virtiofsd did not start for --fs '${dir}'${last ? `: ${last}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  child.stderr?.removeAllListeners("data");
  child.stderr?.resume(); // keep draining its log so it never blocks on a full pipe
  return child;
}

/**
 * Runs the image under QEMU until the guest exits, the timeout fires or the CLI is signalled.
 * Returns the exit code for the CLI (see the module comment). Options must be validated.
 */
export async function runImage(o: RunOptions, io: RunIo = { stderr: (t) => process.stderr.write(t) }): Promise<number> {
  const qemu = findOnPath(QEMU_BINARY);
  if (qemu === undefined) throw new UsageError(`${QEMU_BINARY} not found: run \`npx torito setup\``);

  let workDir: string | undefined;
  let virtiofsd: ChildProcess | undefined;
  const cleanup = () => {
    if (virtiofsd) killWithGrace(virtiofsd);
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  };
  try {
    const options = { ...o };
    const scratch = () => (workDir ??= mkdtempSync(join(tmpdir(), "torito-run-")));
    options.seedFile ??= writeBootSeed(scratch(), o.cpus);
    if (o.fsDir !== undefined) {
      options.virtiofsSocket = join(scratch(), "virtiofsd.sock");
      virtiofsd = await startVirtiofsd(o.fsDir, options.virtiofsSocket);
    }
    const relay = consoleRelay(scratch);
    try {
      return await superviseQemu(qemu, qemuArgs(options), o.timeoutSec, io, relay);
    } finally {
      await relay?.done();
    }
  } finally {
    cleanup();
  }
}

/**
 * The guest console (QEMU's `-serial stdio`) goes to our stdout. QEMU writes it one byte per
 * system call on a non-blocking descriptor, and after a few EAGAINs in a row it drops bytes.
 * When our stdout is a socket (Node's child_process "pipe" is a socketpair) every 1-byte write
 * costs the socket a full buffer's bookkeeping, so ~300 unread bytes already fill it and a
 * reader that is a little late loses console output. In that case QEMU writes into a real pipe
 * (a FIFO, which packs bytes into pages: 64 KiB of room) and this process relays it.
 */
interface ConsoleRelay {
  /** The descriptor QEMU gets as its stdout; close it after spawning. */
  fd: number;
  /** Resolves once everything QEMU wrote has been passed on. */
  done(): Promise<void>;
  /** Drops this process's write end (QEMU's exit then ends the relay). */
  closeWriter(): void;
}

/** Console bytes held for a slow reader of our stdout before QEMU is left to wait (then drop). */
const CONSOLE_BACKLOG = 16 << 20;

function consoleRelay(scratch: () => string): ConsoleRelay | undefined {
  let socket = false;
  try {
    socket = fstatSync(1).isSocket();
  } catch {
    return undefined;
  }
  if (!socket) return undefined;
  const fifo = join(scratch(), "console");
  if (spawnSync("mkfifo", ["-m", "600", fifo]).status !== 0) return undefined; // fall back to inheriting
  const readFd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const fd = openSync(fifo, constants.O_WRONLY);
  const input = new Socket({ fd: readFd, readable: true, writable: false });
  const out = process.stdout;
  const finished = new Promise<void>((resolveDone) => {
    let written: Promise<void> = Promise.resolve();
    input.on("data", (chunk: Buffer) => {
      // Our stdout may be asynchronous: hold up to CONSOLE_BACKLOG here while the reader is slow.
      written = new Promise((resolveWrite) => {
        if (!out.write(chunk, () => resolveWrite()) && out.writableLength > CONSOLE_BACKLOG) {
          input.pause();
          out.once("drain", () => input.resume());
        }
      });
    });
    const flushed = () => void written.then(resolveDone);
    input.once("end", flushed);
    input.once("error", flushed);
  });
  const relay: ConsoleRelay = {
    fd,
    done: async () => {
      relay.closeWriter();
      await finished;
    },
    closeWriter: () => {
      if (relay.fd >= 0) closeSync(relay.fd);
      relay.fd = -1;
    },
  };
  return relay;
}

type StopReason = { kind: "timeout" } | { kind: "signal"; signal: NodeJS.Signals; code: number } | { kind: "crash" };

async function superviseQemu(qemu: string, args: string[], timeoutSec: number | undefined, io: RunIo, relay?: ConsoleRelay): Promise<number> {
  const child = spawnTied(qemu, args, ["pipe", relay?.fd ?? "inherit", "pipe"]);
  relay?.closeWriter(); // QEMU holds the only write end now: its exit ends the relay
  let stopped: StopReason | undefined;
  let qemuErrorSeen = false;
  /** Set when QEMU reports a terminating signal this CLI did not send (kill from outside). */
  let outsideSignal: number | undefined;

  // Console input: forwarded line by line (the terminal stays in cooked mode; Ctrl-C reaches us).
  const stdin = process.stdin;
  child.stdin?.on("error", () => {});
  stdin.on("error", () => {});
  stdin.pipe(child.stdin!);

  let pending = "";
  const onStderrLine = (line: string) => {
    if (IGNORED_QEMU_STDERR.some((re) => re.test(line))) return;
    const terminating = /^qemu-system-x86_64: terminating on signal (\d+)/.exec(line);
    if (terminating !== null) {
      if (stopped !== undefined) return; // we sent it
      outsideSignal = Number(terminating[1]);
    }
    if (/^qemu-system-x86_64: (?!warning:)/.test(line)) qemuErrorSeen = true;
    io.stderr(line + "\n");
    if (line.startsWith("KVM internal error") && stopped === undefined) {
      // QEMU pauses the VM and waits forever; give it a moment to dump registers, then stop it.
      stopped = { kind: "crash" };
      setTimeout(() => child.kill("SIGKILL"), 200).unref();
    }
  };
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      onStderrLine(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
    }
  });

  const signalCodes: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };
  const onSignal = (signal: NodeJS.Signals) => {
    stopped ??= { kind: "signal", signal, code: signalCodes[signal] ?? 1 };
    killWithGrace(child);
  };
  const signals = Object.keys(signalCodes) as NodeJS.Signals[];
  for (const s of signals) process.on(s, onSignal);
  const timer = timeoutSec === undefined ? undefined : setTimeout(() => {
    stopped ??= { kind: "timeout" };
    killWithGrace(child);
  }, timeoutSec * 1000);

  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolveExit, rejectExit) => {
    child.once("error", rejectExit);
    child.once("close", (c, s) => resolveExit([c, s]));
  }).finally(() => {
    if (timer) clearTimeout(timer);
    for (const s of signals) process.off(s, onSignal);
    stdin.unpipe(child.stdin!);
    stdin.pause();
    if (pending !== "") onStderrLine(pending);
  });

  if (stopped?.kind === "timeout") {
    io.stderr(`torito: guest timed out after ${timeoutSec} s\n`);
    return EXIT_TIMEOUT;
  }
  if (stopped?.kind === "signal") return stopped.code;
  if (stopped?.kind === "crash") {
    io.stderr(`torito: guest crashed: KVM internal error (emulation failure; registers above)\n`);
    return EXIT_GUEST_STOPPED;
  }
  if (code === null) {
    io.stderr(`torito: error: ${QEMU_BINARY} was killed by ${signal}\n`);
    return EXIT_QEMU_FAILED;
  }
  if (code === 0 && outsideSignal !== undefined) {
    io.stderr(`torito: error: ${QEMU_BINARY} was stopped from outside by signal ${outsideSignal}\n`);
    return 128 + outsideSignal;
  }
  if (code === 0) {
    io.stderr(`torito: guest stopped without an exit code (triple fault or reset?)\n`);
    return EXIT_GUEST_STOPPED;
  }
  if (code === 1 && qemuErrorSeen) return EXIT_QEMU_FAILED; // QEMU's own message is already on stderr
  if ((code & 1) === 1) return code >> 1; // isa-debug-exit: status = (value << 1) | 1, truncated to 8 bits
  io.stderr(`torito: error: ${QEMU_BINARY} exited with status ${code}\n`);
  return EXIT_QEMU_FAILED;
}
