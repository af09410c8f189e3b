/**
 * Test and benchmark helpers for networks the tests build themselves: a network namespace
 * (with a tap device, the guest's QEMU and the Linux clients all inside it, so nothing
 * touches the machine's own network) and deterministic test sites for the appliance.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from "node:child_process";
import { createCipheriv } from "node:crypto";
import { accessSync, constants, existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Why tap networking cannot be tested here, or null when it can (root, /dev/net/tun, `ip`). */
export function tapUnavailableReason(): string | null {
  if (process.getuid?.() !== 0) return "needs root (network namespaces and tap devices)";
  try {
    accessSync("/dev/net/tun", constants.R_OK | constants.W_OK);
  } catch {
    return "/dev/net/tun is missing or not accessible";
  }
  if (spawnSync("ip", ["-V"], { stdio: "ignore" }).status !== 0) return "the `ip` command (iproute2) is missing";
  return null;
}

/** Output of a command run to completion. */
export interface CommandResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs `command` to completion (killed after `timeoutMs`), collecting its output. */
export function runCommand(command: string, args: readonly string[], timeoutMs = 60_000, input?: Buffer): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: [input ? "pipe" : "ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => out.push(d));
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    if (input) {
      child.stdin!.on("error", () => {});
      child.stdin!.end(input);
    }
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${timeoutMs} ms]`;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr });
    });
  });
}

const NAME_PREFIX = "torito-t";

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * A network namespace owned by this process (`torito-t<pid>-<tag>`). Processes started with
 * `spawn` are tracked and SIGKILLed by `delete()`, which then removes the namespace and with it
 * every device inside.
 */
export class NetNamespace {
  private readonly children = new Set<ChildProcess>();

  private constructor(readonly name: string) {}

  /** Creates the namespace with loopback up; first removes namespaces left by dead test processes. */
  static async create(tag: string): Promise<NetNamespace> {
    const list = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout ?? "";
    for (const line of list.split("\n")) {
      const m = new RegExp(`^(${NAME_PREFIX}(\\d+)-\\S+)`).exec(line);
      if (m && !pidAlive(Number(m[2]))) spawnSync("ip", ["netns", "del", m[1]!], { stdio: "ignore" });
    }
    const ns = new NetNamespace(`${NAME_PREFIX}${process.pid}-${tag}`);
    await ns.must("ip", ["netns", "add", ns.name], false);
    try {
      await ns.must("ip", ["link", "set", "lo", "up"]);
    } catch (e) {
      await ns.delete();
      throw e;
    }
    return ns;
  }

  /** Runs a command inside the namespace to completion. */
  run(command: string, args: readonly string[], timeoutMs = 60_000, input?: Buffer): Promise<CommandResult> {
    return runCommand("ip", ["netns", "exec", this.name, command, ...args], timeoutMs, input);
  }

  /** Runs a command (inside the namespace unless `inside` is false); throws with its stderr unless it exits 0. */
  async must(command: string, args: readonly string[], inside = true): Promise<Buffer> {
    const r = inside ? await this.run(command, args) : await runCommand(command, args);
    if (r.code !== 0) throw new Error(`${command} ${args.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
    return r.stdout;
  }

  /** Starts a long-running process inside the namespace; `delete()` kills it. */
  spawn(command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
    const child = spawn("ip", ["netns", "exec", this.name, command, ...args], { stdio: ["ignore", "pipe", "pipe"], ...options });
    this.children.add(child);
    child.once("exit", () => this.children.delete(child));
    return child;
  }

  /** Creates a persistent tap device `ifname` with `cidr` on the host side, up (`multiQueue`: for `--net tap:NAME,mq`). */
  async addTap(ifname: string, cidr: string, options: { multiQueue?: boolean } = {}): Promise<void> {
    await this.must("ip", ["tuntap", "add", "dev", ifname, "mode", "tap", ...(options.multiQueue ? ["multi_queue"] : [])]);
    await this.must("ip", ["addr", "add", cidr, "dev", ifname]);
    await this.must("ip", ["link", "set", ifname, "up"]);
  }

  /** Kills the processes started here (waiting up to 5 s for them) and deletes the namespace. */
  async delete(): Promise<void> {
    const waits = [...this.children].map((child) => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const timer = setTimeout(resolve, 5000);
      child.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill("SIGKILL");
    }));
    await Promise.all(waits);
    await runCommand("ip", ["netns", "del", this.name]);
  }
}

/** Deterministic pseudo-random bytes (AES-128-CTR keystream of `seed`). */
export function seededBytes(length: number, seed: number): Buffer {
  const key = Buffer.alloc(16);
  key.writeUInt32BE(seed >>> 0, 0);
  const cipher = createCipheriv("aes-128-ctr", key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()]);
}

/** A 612-byte HTML page (the size of nginx's default index.html, the Unikraft workload). */
export function page612(): Buffer {
  const head = "<!DOCTYPE html>\n<html><head><title>Welcome to Torito</title></head><body>\n<p>";
  const tail = "</p>\n</body></html>\n";
  return Buffer.from(head + "x".repeat(612 - head.length - tail.length) + tail);
}

/**
 * Returns `build/net-sites/NAME`, written once (same bytes and mtimes on later calls, so the
 * appliance image cache hits): index.html, 612.html and `big.bin` of `bigBytes` seeded bytes.
 */
export function testSite(repo: string, name: string, bigBytes: number): string {
  const dir = join(repo, "build/net-sites", name);
  const big = join(dir, "big.bin");
  if (existsSync(big) && statSync(big).size === bigBytes) return dir;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "index.html"), "<!DOCTYPE html>\n<title>torito test site</title>\n<p>big.bin, 612.html</p>\n");
  writeFileSync(join(dir, "612.html"), page612());
  writeFileSync(big, seededBytes(bigBytes, 0x70517));
  return dir;
}
