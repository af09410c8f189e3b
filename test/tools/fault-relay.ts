/**
 * A fault-injecting Ethernet relay between a guest and Linux (this machine's kernel has no
 * netem): QEMU's `-netdev dgram` sends each guest frame as one UDP datagram to the relay, which
 * writes it to a tap device; frames Linux sends out of the tap go back to QEMU the same way.
 * On the way, in both directions, a seeded PRNG drops, duplicates, reorders and delays frames.
 *
 *   node --import tsx test/tools/fault-relay.ts --tap NAME --port P --qemu-port Q [--seed N]
 *
 * Run it inside the network namespace that holds the tap (it attaches to an existing tap, or
 * creates a transient one). It binds UDP 127.0.0.1:P, sends to QEMU at 127.0.0.1:Q, prints
 * "ready" when attached, then reads commands on stdin, one per line, answering one JSON line:
 *   {"loss":0.05,"duplicate":0,"reorder":0,"delayMs":0}   set faults (missing keys: 0) -> settings
 *   stats                                                  -> counters per direction
 * Node has no ioctl, so TUNSETIFF is issued by python3 on the relay's own /dev/net/tun file
 * (inherited as fd 3): the attachment belongs to the open file, which the relay keeps.
 */
import { spawnSync, type ChildProcess } from "node:child_process";
import { createSocket, type Socket } from "node:dgram";
import { openSync, read, writeSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/** What the relay does to each frame, in each direction independently. */
export interface FaultSettings {
  /** Probability that a frame is dropped. */
  loss: number;
  /** Probability that a (surviving) frame is sent twice. */
  duplicate: number;
  /** Probability that a frame is held back and sent after the next 1..3 frames (or 10 ms). */
  reorder: number;
  /** Every frame is delivered this long after it arrived (order kept). */
  delayMs: number;
}

/** Counters of one direction. */
export interface DirectionStats {
  frames: number;
  dropped: number;
  duplicated: number;
  reordered: number;
  delivered: number;
}

/** Counters of both directions: guest → Linux (`toTap`) and Linux → guest (`toGuest`). */
export interface RelayStats {
  toTap: DirectionStats;
  toGuest: DirectionStats;
}

export const NO_FAULTS: FaultSettings = { loss: 0, duplicate: 0, reorder: 0, delayMs: 0 };

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const REORDER_HOLD_MS = 10;

/**
 * One direction of the relay: frames go in through `push`, come out through `deliver`,
 * faulted per the current settings.
 */
export class FaultyLink {
  readonly stats: DirectionStats = { frames: 0, dropped: 0, duplicated: 0, reordered: 0, delivered: 0 };
  settings: FaultSettings = { ...NO_FAULTS };
  private held: { frame: Buffer; after: number; timer: NodeJS.Timeout } | null = null;
  private readonly delayed: { due: number; frame: Buffer }[] = [];
  private delayTimer: NodeJS.Timeout | null = null;

  constructor(private readonly random: () => number, private readonly deliver: (frame: Buffer) => void) {}

  /** Takes one frame (the buffer must stay untouched afterwards). */
  push(frame: Buffer): void {
    this.stats.frames++;
    const s = this.settings;
    if (s.loss > 0 && this.random() < s.loss) {
      this.stats.dropped++;
      return;
    }
    const copies = s.duplicate > 0 && this.random() < s.duplicate ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    if (this.held === null && s.reorder > 0 && this.random() < s.reorder) {
      this.stats.reordered++;
      const timer = setTimeout(() => this.releaseHeld(), REORDER_HOLD_MS);
      this.held = { frame, after: 1 + Math.floor(this.random() * 3), timer };
      if (copies === 2) this.emit(frame);
      return;
    }
    for (let i = 0; i < copies; i++) this.emit(frame);
    if (this.held !== null && --this.held.after === 0) this.releaseHeld();
  }

  private releaseHeld(): void {
    const held = this.held;
    if (held === null) return;
    this.held = null;
    clearTimeout(held.timer);
    this.emit(held.frame);
  }

  private emit(frame: Buffer): void {
    if (this.settings.delayMs <= 0 && this.delayed.length === 0) {
      this.stats.delivered++;
      this.deliver(frame);
      return;
    }
    this.delayed.push({ due: performance.now() + this.settings.delayMs, frame });
    this.schedule();
  }

  private schedule(): void {
    if (this.delayTimer !== null || this.delayed.length === 0) return;
    const wait = Math.max(0, this.delayed[0]!.due - performance.now());
    this.delayTimer = setTimeout(() => {
      this.delayTimer = null;
      const now = performance.now();
      while (this.delayed.length > 0 && this.delayed[0]!.due <= now + 0.5) {
        this.stats.delivered++;
        this.deliver(this.delayed.shift()!.frame);
      }
      this.schedule();
    }, wait);
  }
}

const TUNSETIFF_PY = [
  "import fcntl, struct, sys",
  "IFF_TAP, IFF_NO_PI, TUNSETIFF = 0x0002, 0x1000, 0x400454ca",
  "fcntl.ioctl(3, TUNSETIFF, struct.pack('16sH', sys.argv[1].encode(), IFF_TAP | IFF_NO_PI))",
].join("\n");

/** Opens /dev/net/tun and attaches it to tap `ifname` (via python3); returns the fd. */
export function openTap(ifname: string): number {
  const fd = openSync("/dev/net/tun", "r+");
  const r = spawnSync("python3", ["-c", TUNSETIFF_PY, ifname], { stdio: ["ignore", "inherit", "pipe", fd], encoding: "utf8" });
  if (r.status !== 0) throw new Error(`TUNSETIFF ${ifname} failed: ${r.error?.message ?? r.stderr.trim()}`);
  return fd;
}

/** Runs the relay program (see the module comment) until stdin closes or it is killed. */
async function relayMain(argv: string[]): Promise<void> {
  const opt = (name: string, fallback?: string): string => {
    const i = argv.indexOf(`--${name}`);
    const v = i >= 0 ? argv[i + 1] : fallback;
    if (v === undefined) throw new Error(`fault-relay: --${name} is required`);
    return v;
  };
  const tap = opt("tap");
  const port = Number(opt("port"));
  const qemuPort = Number(opt("qemu-port"));
  const seed = Number(opt("seed", "1"));
  const fd = openTap(tap);
  const socket: Socket = createSocket("udp4");
  await new Promise<void>((r) => socket.bind(port, "127.0.0.1", r));
  socket.setRecvBufferSize(4 << 20);
  socket.setSendBufferSize(4 << 20);
  const random = seededRandom(seed);
  const toTap = new FaultyLink(random, (frame) => {
    try {
      writeSync(fd, frame);
    } catch {
      // the tap is down or gone: the frame is lost, like on a wire
    }
  });
  const toGuest = new FaultyLink(random, (frame) => socket.send(frame, qemuPort, "127.0.0.1"));
  socket.on("message", (frame) => toTap.push(frame));
  // One read in flight at a time (a second one would race it and reorder frames by accident).
  const readLoop = () => {
    const buffer = Buffer.allocUnsafe(65536);
    read(fd, buffer, 0, buffer.length, null, (err, n) => {
      if (err) {
        process.stderr.write(`fault-relay: tap read failed: ${err.message}\n`);
        process.kill(process.pid, "SIGKILL");
        return;
      }
      if (n > 0) toGuest.push(buffer.subarray(0, n));
      readLoop();
    });
  };
  readLoop();
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    const text = line.trim();
    if (text === "stats") {
      process.stdout.write(JSON.stringify({ toTap: toTap.stats, toGuest: toGuest.stats }) + "\n");
    } else if (text !== "") {
      const s = { ...NO_FAULTS, ...(JSON.parse(text) as Partial<FaultSettings>) };
      toTap.settings = s;
      toGuest.settings = { ...s };
      process.stdout.write(JSON.stringify(s) + "\n");
    }
  });
  // A read blocked in the thread pool would keep a normal exit waiting forever.
  lines.on("close", () => process.kill(process.pid, "SIGKILL"));
  process.stdout.write("ready\n");
}

/** The relay running as a child process, driven over its stdin/stdout. */
export class FaultRelay {
  private readonly replies: ((line: string) => void)[] = [];
  private output = "";

  private constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      this.output += line + "\n";
      this.replies.shift()?.(line);
    });
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (this.output += d));
  }

  /**
   * Starts the relay through `spawner` (e.g. NetNamespace.spawn, which runs it inside the
   * namespace) and waits until it is attached to the tap.
   */
  static async start(spawner: (command: string, args: string[]) => ChildProcess, o: { tap: string; port: number; qemuPort: number; seed: number }): Promise<FaultRelay> {
    const args = ["--import", "tsx", fileURLToPath(import.meta.url), "--tap", o.tap, "--port", String(o.port), "--qemu-port", String(o.qemuPort), "--seed", String(o.seed)];
    const relay = new FaultRelay(spawner(process.execPath, args));
    const ready = await relay.reply(15_000);
    if (ready !== "ready") throw new Error(`fault relay did not start: ${relay.output}`);
    return relay;
  }

  private reply(timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`fault relay did not answer: ${this.output}`)), timeoutMs);
      const exit = () => reject(new Error(`fault relay exited: ${this.output}`));
      this.child.once("exit", exit);
      this.replies.push((line) => {
        clearTimeout(timer);
        this.child.off("exit", exit);
        resolve(line);
      });
    });
  }

  /** Sets the faults of both directions. */
  async set(settings: Partial<FaultSettings>): Promise<void> {
    const answer = this.reply(5000);
    this.child.stdin!.write(JSON.stringify(settings) + "\n");
    await answer;
  }

  /** Reads the counters. */
  async stats(): Promise<RelayStats> {
    const answer = this.reply(5000);
    this.child.stdin!.write("stats\n");
    return JSON.parse(await answer) as RelayStats;
  }

  /** The `--netdev` spec that connects QEMU (in the same namespace) to this relay. */
  static netdev(port: number, qemuPort: number): string {
    return `dgram,local.type=inet,local.host=127.0.0.1,local.port=${qemuPort},remote.type=inet,remote.host=127.0.0.1,remote.port=${port}`;
  }

  /** Stops the relay. */
  stop(): void {
    this.child.stdin?.end();
    this.child.kill("SIGKILL");
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  relayMain(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`fault-relay: ${e instanceof Error ? e.message : String(e)}\n`);
    process.kill(process.pid, "SIGKILL");
  });
}
