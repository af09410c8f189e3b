/**
 * The `torito` command line: a small strict argument parser and the build/run/setup commands.
 * bin/torito.js bundles this file and calls `main`.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { BundleError, buildImage, repoRoot } from "./build.ts";
import { applianceImage } from "./serve.ts";
import {
  DEFAULT_MEM_BYTES, EXIT_USAGE, MAX_CPUS, ToolError, UsageError, defaultAccel, dryRunLines, parseAccel,
  checkMultiqueue, nicPlan, parseCidr, parseDisk, parseIntInRange, parseIpv4Address, parseMem, parseMemWeights, parseNet, parsePort, parseTimeout, runImage,
  validateRunOptions, type RunOptions,
} from "./run.ts";

/** How one flag is parsed: a boolean switch, a single value, or a repeatable value. */
export interface FlagSpec {
  kind: "boolean" | "value" | "list";
  /** One-letter alias, e.g. "o" for `-o`. */
  short?: string;
}

/** The result of `parseArgs`. `rest` holds the words after `--` (null when there was no `--`). */
export interface ParsedArgs {
  flags: Map<string, string | true | string[]>;
  positionals: string[];
  rest: string[] | null;
}

/**
 * Parses `argv` strictly against `spec`: `--name value`, `--name=value`, `-x value`; unknown
 * flags, missing values, values given to switches and repeated single-value flags throw
 * UsageError. `--` ends the flags only when `allowRest`; otherwise it is an error.
 */
export function parseArgs(argv: readonly string[], spec: Record<string, FlagSpec>, command: string, allowRest = false): ParsedArgs {
  const flags = new Map<string, string | true | string[]>();
  const positionals: string[] = [];
  let rest: string[] | null = null;
  const byShort = new Map(Object.entries(spec).filter(([, s]) => s.short).map(([n, s]) => [s.short!, n]));
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      if (!allowRest) throw new UsageError(`'torito ${command}' takes no arguments after --`);
      rest = argv.slice(i + 1);
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      continue;
    }
    let name: string;
    let inline: string | undefined;
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      inline = eq < 0 ? undefined : arg.slice(eq + 1);
    } else {
      const long = byShort.get(arg.slice(1, 2));
      if (long === undefined) throw new UsageError(`unknown option ${arg} for 'torito ${command}' (see torito ${command} --help)`);
      name = long;
      inline = arg.length > 2 ? arg.slice(2) : undefined;
    }
    const flag = spec[name];
    if (flag === undefined) throw new UsageError(`unknown option --${name} for 'torito ${command}' (see torito ${command} --help)`);
    const shown = arg.startsWith("--") ? `--${name}` : arg.slice(0, 2);
    if (flag.kind === "boolean") {
      if (inline !== undefined) throw new UsageError(`${shown} takes no value`);
      flags.set(name, true);
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith("--")) throw new UsageError(`${shown} needs a value`);
      value = next;
      i++;
    }
    if (flag.kind === "list") {
      const list = flags.get(name);
      flags.set(name, [...(Array.isArray(list) ? list : []), value]);
    } else {
      if (flags.has(name)) throw new UsageError(`${shown} given more than once`);
      flags.set(name, value);
    }
  }
  return { flags, positionals, rest };
}

const HELP: Record<string, string> = {
  main: `Usage: torito <command> [options]

Commands:
  build <entry.ts> -o <image.elf>   bundle an app with the kernel into a bootable image
  run <image.elf> [options] [-- args]  boot an image as a QEMU microVM
  serve DIR [--port HOSTPORT]       serve DIR over HTTP with the web server appliance
  setup [--quiet]                   fetch and build QuickJS and the platform (once)
  help [command]                    show help for a command

Run 'torito <command> --help' for the options of a command.
`,
  build: `Usage: torito build <entry.ts> -o <image.elf> [--files DIR] [--verbose]

Bundles <entry.ts> (which imports "torito") with the kernel, compiles it to QuickJS
bytecode and links it with the platform into a PVH ELF image.

Options:
  -o, --output FILE   image to write (required)
  --files DIR         pack DIR into the image, read-only at /app in the guest
  -v, --verbose       print step timings and the image size
Exit codes: 0 built, 1 build failed, 2 usage error.
`,
  run: `Usage: torito run <image.elf> [options] [-- app args...]

Boots the image as a QEMU microvm with the console on stdio, and exits with the
guest's exit code.

Options:
  --mem SIZE          guest memory, e.g. 16M, 1G, 8388608 (2M..3G; default 64M)
  --cpus N            virtual CPUs, 1..16 (default 1)
  --accel kvm|tcg     accelerator (default: kvm if /dev/kvm is usable, else tcg;
                      the TORITO_ACCEL environment variable overrides the default)
  --timeout S         stop the guest after S seconds (exit code 124)
  --mem-weights W,W.. relative memory share of each core (default equal)
  --port [ADDR:]HOST:GUEST[@CORE]  forward TCP ADDR:HOST (default 127.0.0.1) to
                      guest port GUEST on CORE's NIC (default core 0; each core
                      named gets its own user-network virtio-net); repeatable
  --fs DIR            share DIR with the guest (virtio-fs, tag fs0)
  --disk FILE[:ro][@CORE]  attach FILE as a raw virtio-blk disk (:ro read-only);
                      repeatable: the i-th goes to core i mod N unless @CORE says
  --console FILE      attach a virtio-console whose output goes to FILE
  --rng               attach a virtio-rng device per core (host /dev/urandom);
                      its entropy is mixed into the boot seed every run passes
  --virtio-modern     modern virtio-mmio transport (version 2) instead of legacy
  --netdev SPEC       raw QEMU -netdev backend for virtio-net (e.g. for tests:
                      'dgram,local.type=inet,local.host=127.0.0.1,local.port=P,...');
                      not with --port
  --net tap:NAME[@CORE]  attach host tap device NAME (QEMU opens it: run as root,
                      or create it first with 'ip tuntap add NAME mode tap user USER');
                      ',vnet_hdr=off' turns off checksum offload; repeatable: the
                      i-th goes to core i unless @CORE says; not with --port;
                      ',mq' (alone, with --cpus N >= 2 and one --ip): one multiqueue
                      NIC with a queue pair and a TCP/IP stack per core, on one
                      address (the tap must be 'ip tuntap add NAME mode tap multi_queue')
  --ip A.B.C.D/N[,..] static guest address for --net/--netdev (default: DHCP);
                      a list gives core i the i-th address
  --gw ADDR           default gateway (needs --ip)
  --dns ADDR[,ADDR]   DNS servers (needs --ip)
  --dry-run           print the QEMU command line and exit
Exit codes: the guest's code (0..127), 1 QEMU failed, 2 usage error,
70 guest stopped without an exit code, 124 timeout, 130/143 interrupted.
`,
  serve: `Usage: torito serve DIR [--port HOSTPORT] [run options]

Builds the WebServer appliance (examples/static-web-server) with DIR packed into the
image (cached until DIR or the sources change) and boots it, serving DIR on
http://127.0.0.1:HOSTPORT/ (default 8080) until interrupted. Accepts the options of
'torito run' except --port forms other than a host port. With --cpus N every core
serves on its own NIC: core i on host port HOSTPORT+i. With --net tap:NAME (or
--netdev) it serves on port 80 of the guest's own address (--ip A.B.C.D/N, or DHCP);
with --cpus N --net tap:NAME,mq --ip A.B.C.D/N every core serves on that one address,
each on its own queue pair of one multiqueue NIC.
`,
  setup: `Usage: torito setup [--quiet]

Fetches the QuickJS source and builds the host qjsc and the platform (host/setup.sh).
`,
};

const BUILD_FLAGS: Record<string, FlagSpec> = {
  output: { kind: "value", short: "o" },
  files: { kind: "value" },
  verbose: { kind: "boolean", short: "v" },
  help: { kind: "boolean", short: "h" },
};
/** The flags of `torito run` (and `serve`). */
export const RUN_FLAGS: Record<string, FlagSpec> = {
  mem: { kind: "value" },
  cpus: { kind: "value" },
  accel: { kind: "value" },
  timeout: { kind: "value" },
  port: { kind: "list" },
  fs: { kind: "value" },
  disk: { kind: "list" },
  console: { kind: "value" },
  rng: { kind: "boolean" },
  "virtio-modern": { kind: "boolean" },
  netdev: { kind: "value" },
  net: { kind: "list" },
  "mem-weights": { kind: "value" },
  ip: { kind: "value" },
  gw: { kind: "value" },
  dns: { kind: "value" },
  "dry-run": { kind: "boolean" },
  help: { kind: "boolean", short: "h" },
};
const SETUP_FLAGS: Record<string, FlagSpec> = {
  quiet: { kind: "boolean", short: "q" },
  help: { kind: "boolean", short: "h" },
};

function str(args: ParsedArgs, name: string): string | undefined {
  const v = args.flags.get(name);
  return typeof v === "string" ? v : undefined;
}

function onePositional(args: ParsedArgs, command: string, what: string): string {
  if (args.positionals.length === 0) throw new UsageError(`'torito ${command}' needs ${what} (see torito ${command} --help)`);
  if (args.positionals.length > 1) {
    const hint = command === "run" ? " (app arguments go after --)" : "";
    throw new UsageError(`unexpected argument '${args.positionals[1]}'${hint}`);
  }
  return args.positionals[0]!;
}

/**
 * Turns parsed `run` arguments into RunOptions (does not touch the file system). Without
 * --accel, the default (TORITO_ACCEL, else a /dev/kvm probe) is chosen last, so that usage
 * errors come before any note about falling back to tcg.
 */
export function runOptionsFromArgs(args: ParsedArgs, note: (line: string) => void): RunOptions & { dryRun: boolean } {
  const image = onePositional(args, "run", "an image file");
  const mem = str(args, "mem");
  const cpus = str(args, "cpus");
  const accel = str(args, "accel");
  const timeout = str(args, "timeout");
  const ports = args.flags.get("port");
  const options: RunOptions & { dryRun: boolean } = {
    image,
    memBytes: mem === undefined ? DEFAULT_MEM_BYTES : parseMem(mem),
    cpus: cpus === undefined ? 1 : parseIntInRange(cpus, "--cpus", 1, MAX_CPUS),
    accel: accel === undefined ? "kvm" : parseAccel(accel),
    ports: Array.isArray(ports) ? ports.map(parsePort) : [],
    appArgs: args.rest ?? [],
    dryRun: args.flags.has("dry-run"),
  };
  if (timeout !== undefined) options.timeoutSec = parseTimeout(timeout);
  const fs = str(args, "fs");
  if (fs !== undefined) options.fsDir = fs;
  const disks = args.flags.get("disk");
  if (Array.isArray(disks) && disks.length > 0) options.disks = disks.map(parseDisk);
  const consoleFile = str(args, "console");
  if (consoleFile !== undefined) options.consoleFile = consoleFile;
  if (args.flags.has("rng")) options.rng = true;
  if (args.flags.has("virtio-modern")) options.virtioModern = true;
  const netdev = str(args, "netdev");
  if (netdev !== undefined) {
    if (options.ports.length > 0) throw new UsageError("--netdev and --port both configure the network device; use one");
    if (/(^|,)id=/.test(netdev)) throw new UsageError(`--netdev '${netdev}': leave out id= (torito names it net0)`);
    options.netdev = netdev;
  }
  const net = args.flags.get("net");
  if (Array.isArray(net) && net.length > 0) {
    options.taps = net.map(parseNet);
    if (options.ports.length > 0) throw new UsageError("--net and --port both configure the network device; use one");
    if (options.netdev !== undefined) throw new UsageError("--net and --netdev both configure the network device; use one");
  }
  nicPlan(options); // one NIC per core, on cores the VM has (or one multiqueue NIC for all)
  const weights = str(args, "mem-weights");
  if (weights !== undefined) options.memWeights = parseMemWeights(weights, options.cpus);
  const ip = str(args, "ip"), gw = str(args, "gw"), dns = str(args, "dns");
  if (ip !== undefined) {
    options.ip = ip.split(",").map(parseCidr).join(",");
    if (options.taps === undefined && options.netdev === undefined) {
      throw new UsageError("--ip needs --net or --netdev (QEMU's user network behind --port has a fixed address)");
    }
  }
  if (gw !== undefined) {
    if (ip === undefined) throw new UsageError("--gw needs --ip (without --ip the guest uses DHCP)");
    options.gateway = parseIpv4Address(gw, "--gw");
  }
  if (dns !== undefined) {
    if (ip === undefined) throw new UsageError("--dns needs --ip (without --ip the guest uses DHCP)");
    options.dns = dns.split(",").map((a) => parseIpv4Address(a, "--dns"));
  }
  checkMultiqueue(options);
  const seen = new Set<number>();
  for (const p of options.ports) {
    if (seen.has(p.hostPort)) throw new UsageError(`--port: host port ${p.hostPort} forwarded twice`);
    seen.add(p.hostPort);
  }
  if (accel === undefined) options.accel = defaultAccel(note);
  return options;
}

async function commandBuild(argv: string[]): Promise<number> {
  const args = parseArgs(argv, BUILD_FLAGS, "build");
  if (args.flags.has("help")) return help("build");
  const entry = onePositional(args, "build", "an entry file");
  const output = str(args, "output");
  if (output === undefined) throw new UsageError(`'torito build' needs -o <image.elf>`);
  const log = args.flags.has("verbose") ? (line: string) => process.stderr.write(`torito: ${line}\n`) : undefined;
  const files = str(args, "files");
  await buildImage({ entry, output, ...(files !== undefined ? { files } : {}), ...(log ? { log } : {}) });
  return 0;
}

async function commandServe(argv: string[]): Promise<number> {
  const args = parseArgs(argv, RUN_FLAGS, "serve", false);
  if (args.flags.has("help")) return help("serve");
  const dir = onePositional(args, "serve", "a directory to serve");
  const port = args.flags.get("port");
  const tap = args.flags.has("net") || args.flags.has("netdev");
  const hostPort = port === undefined ? "8080" : Array.isArray(port) && port.length === 1 ? port[0]! : undefined;
  if (hostPort === undefined || !/^\d+$/.test(hostPort)) throw new UsageError("serve: --port takes one host port number, e.g. --port 8080");
  if (!tap) {
    // with --net/--netdev: port 80 at the guest's own address; else one NIC per core
    const cpus = str(args, "cpus");
    const n = cpus !== undefined && /^\d+$/.test(cpus) ? Math.max(1, Math.min(Number(cpus), MAX_CPUS)) : 1;
    if (Number(hostPort) + n - 1 > 65535) throw new UsageError(`serve: host ports ${hostPort}..${Number(hostPort) + n - 1} do not fit`);
    args.flags.set("port", Array.from({ length: n }, (_, i) => `${Number(hostPort) + i}:80@${i}`));
  }
  const image = await applianceImage(dir);
  args.positionals = [image];
  const notes: string[] = [];
  const options = runOptionsFromArgs(args, (line) => notes.push(line));
  // A server's TCP sequence numbers want real entropy: runImage passes the boot seed (fw_cfg),
  // which costs the guest two port writes where a virtio-rng device costs ~1.5 ms of start-up.
  validateRunOptions(options);
  for (const line of notes) process.stderr.write(line + "\n");
  if (options.dryRun) {
    process.stdout.write(dryRunLines(options).join("\n") + "\n");
    return 0;
  }
  const where = tap ? `port 80 of the guest (${options.ip ?? "address from DHCP"})`
    : options.cpus > 1 ? options.ports.map((p) => `http://127.0.0.1:${p.hostPort}/ (core ${p.core ?? 0})`).join(", ")
    : `http://127.0.0.1:${hostPort}/`;
  process.stderr.write(`torito: serving ${dir} on ${where} (Ctrl-C to stop)\n`);
  return runImage(options);
}

async function commandRun(argv: string[]): Promise<number> {
  const args = parseArgs(argv, RUN_FLAGS, "run", true);
  if (args.flags.has("help")) return help("run");
  const notes: string[] = [];
  const options = runOptionsFromArgs(args, (line) => notes.push(line));
  validateRunOptions(options);
  for (const line of notes) process.stderr.write(line + "\n"); // only once the options are known good
  if (options.dryRun) {
    process.stdout.write(dryRunLines(options).join("\n") + "\n");
    return 0;
  }
  return runImage(options);
}

function commandSetup(argv: string[]): number {
  const args = parseArgs(argv, SETUP_FLAGS, "setup");
  if (args.flags.has("help")) return help("setup");
  const repo = repoRoot();
  const script = join(repo, "host/setup.sh");
  if (!existsSync(script)) throw new ToolError(`${script} is missing`);
  const result = spawnSync("sh", [script, ...(args.flags.has("quiet") ? ["--quiet"] : [])], { stdio: "inherit", cwd: repo });
  if (result.error) throw new ToolError(`cannot run sh: ${result.error.message}`);
  return result.status ?? 1;
}

function help(topic = "main"): number {
  process.stdout.write(HELP[topic] ?? HELP["main"]!);
  return 0;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(join(repoRoot(), "package.json"), "utf8")) as { version: string };
  return pkg.version;
}

/** Runs the CLI with `argv` (without node and script) and returns the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "build":
        return await commandBuild(rest);
      case "run":
        return await commandRun(rest);
      case "serve":
        return await commandServe(rest);
      case "setup":
        return commandSetup(rest);
      case "help":
      case "--help":
      case "-h":
        if (rest.length > 1 || (rest[0] !== undefined && !(rest[0] in HELP && rest[0] !== "main"))) {
          throw new UsageError(`no help for '${rest.join(" ")}' (commands: build, run, setup)`);
        }
        return help(rest[0]);
      case "--version":
        process.stdout.write(`torito ${version()}\n`);
        return 0;
      case undefined:
        throw new UsageError("missing command (see torito --help)");
      default:
        throw new UsageError(`unknown command '${command}' (see torito --help)`);
    }
  } catch (e) {
    if (e instanceof BundleError) {
      for (const line of e.lines) process.stderr.write(`torito: error: ${line}\n`);
      return 1;
    }
    if (e instanceof UsageError || e instanceof ToolError) {
      process.stderr.write(`torito: error: ${e.message}\n`);
      return e instanceof UsageError ? EXIT_USAGE : 1;
    }
    throw e;
  }
}
