// The virtio-net driver against REAL QEMU frames: the guest's virtio-net device is backed by
// QEMU's `-netdev dgram` (each Ethernet frame one UDP datagram on 127.0.0.1), and a Node
// dgram socket here echoes every frame with the source and destination MACs swapped. The
// guest (test/fixtures/apps/net-echo.ts) checks every echoed byte. Legacy and modern
// transports, with and without mergeable receive buffers, under the default accelerator
// (KVM when usable; TORITO_ACCEL=tcg forces TCG) and the essential cases under the other.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createSocket, type Socket } from "node:dgram";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { buildImage } from "../../host/build.ts";
import { kvmUsable, qemuArgs, QEMU_BINARY, type Accel } from "../../host/run.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "../..");
const cli = join(repo, "bin/torito.js");
const work = mkdtempSync(join(tmpdir(), "torito-net-test-"));
const image = join(work, "net-echo.elf");
const defaultAccel = (process.env["TORITO_ACCEL"] || (kvmUsable().ok ? "kvm" : "tcg")) as Accel;
const otherAccel: Accel | undefined = defaultAccel === "kvm" ? "tcg" : kvmUsable().ok ? "kvm" : undefined;

before(async () => {
  await buildImage({ entry: join(repo, "test/fixtures/apps/net-echo.ts"), output: image });
});
after(() => rmSync(work, { recursive: true, force: true }));

/** The host end of the wire: echoes frames (MACs swapped) and records what it saw. */
export class EchoPeer {
  readonly socket: Socket;
  port = 0;
  /** The UDP port QEMU's dgram backend binds (where the peer sends). */
  qemuPort = 0;
  frames = 0;
  sizes = new Set<number>();
  broadcasts = 0;
  udpChecksumsGood = 0;
  udpChecksumsBad = 0;
  echo = true;

  private constructor() {
    this.socket = createSocket("udp4");
    this.socket.on("message", (m) => this.onFrame(m));
  }

  static async start(): Promise<EchoPeer> {
    const peer = new EchoPeer();
    await new Promise<void>((r) => peer.socket.bind(0, "127.0.0.1", r));
    peer.port = peer.socket.address().port;
    // Bursts from the guest outrun this process now and then: a deep buffer (capped by
    // net.core.rmem_max) keeps loopback from dropping them.
    try {
      peer.socket.setRecvBufferSize(4 << 20);
    } catch {
      // keep the default
    }
    peer.qemuPort = await freeUdpPort();
    return peer;
  }

  /** The `--netdev` spec connecting QEMU to this peer. */
  get netdev(): string {
    return `dgram,local.type=inet,local.host=127.0.0.1,local.port=${this.qemuPort},remote.type=inet,remote.host=127.0.0.1,remote.port=${this.port}`;
  }

  private onFrame(m: Buffer): void {
    this.frames++;
    this.sizes.add(m.length);
    if (m.readUIntBE(0, 6) === 0xffffffffffff) this.broadcasts++;
    if (m.length >= 42 && m.readUInt16BE(12) === 0x0800 && m[23] === 17) {
      if (udpChecksumOk(m)) this.udpChecksumsGood++;
      else this.udpChecksumsBad++;
    }
    if (!this.echo) return;
    const reply = Buffer.from(m);
    m.copy(reply, 0, 6, 12);
    m.copy(reply, 6, 0, 6);
    this.socket.send(reply, this.qemuPort, "127.0.0.1");
  }

  close(): void {
    this.socket.close();
  }
}

/** A UDP port free right now on 127.0.0.1. */
export async function freeUdpPort(): Promise<number> {
  const s = createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function udpChecksumOk(frame: Buffer): boolean {
  const ip = 14;
  const ihl = (frame[ip]! & 15) * 4;
  const udp = ip + ihl;
  const length = frame.readUInt16BE(udp + 4);
  let sum = frame.readUInt16BE(ip + 12) + frame.readUInt16BE(ip + 14) + frame.readUInt16BE(ip + 16) + frame.readUInt16BE(ip + 18) + 17 + length;
  for (let i = udp; i < udp + length; i += 2) sum += (frame[i]! << 8) | (i + 1 < udp + length ? frame[i + 1]! : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum === 0xffff;
}

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

interface GuestOptions {
  accel?: Accel;
  modern?: boolean;
  /** Extra `-global` settings for QEMU (runs QEMU directly instead of the CLI). */
  globals?: string[];
}

/** Boots the echo app wired to `peer`: through `torito run --netdev` unless QEMU globals are needed. */
function runGuest(peer: EchoPeer, appArgs: string[], o: GuestOptions = {}): Promise<Result> {
  const accel = o.accel ?? defaultAccel;
  let command: string;
  let argv: string[];
  if (o.globals === undefined) {
    command = process.execPath;
    argv = [cli, "run", image, "--accel", accel, "--timeout", "40", "--netdev", peer.netdev, ...(o.modern ? ["--virtio-modern"] : []), "--", ...appArgs];
  } else {
    command = QEMU_BINARY;
    argv = qemuArgs({ image, accel, memBytes: 64 << 20, cpus: 1, ports: [], appArgs, netdev: peer.netdev, virtioModern: o.modern ?? false });
    for (const g of o.globals) argv.push("-global", g);
  }
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, { cwd: repo, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill("SIGKILL"), 45_000);
    child.on("error", reject);
    child.on("close", (status) => {
      clearTimeout(timer);
      // Direct QEMU: isa-debug-exit reports (code << 1) | 1.
      resolve({ status: o.globals === undefined || status === null ? status : (status & 1) === 1 ? status >> 1 : 70, stdout, stderr });
    });
  });
}

interface Counters {
  rxFrames: number;
  rxErrors: number;
  rxDrops: number;
  rxMerged: number;
  txFrames: number;
  txFull: number;
  broken: string | null;
}

function lastJson<T>(stdout: string): T {
  const line = stdout.trim().split("\n").reverse().find((l) => l.startsWith("{"));
  assert.ok(line !== undefined, `no JSON line in: ${stdout}`);
  try {
    return JSON.parse(line) as T;
  } catch (e) {
    throw new Error(`bad JSON line from the guest (${(e as Error).message}): ${JSON.stringify(stdout)}`);
  }
}

function assertEcho(r: Result, n: number): Counters {
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, new RegExp(`^echo ok=${n} bad=0 lost=0 `, "m"), r.stdout);
  const c = lastJson<Counters>(r.stdout);
  assert.equal(c.broken, null);
  assert.equal(c.rxErrors, 0);
  assert.equal(c.rxFrames, n);
  assert.equal(c.txFrames, n);
  return c;
}

function suite(accel: Accel, full: boolean): void {
  let peer: EchoPeer;
  before(async () => (peer = await EchoPeer.start()));
  after(() => peer.close());

  for (const modern of full ? [false, true] : [false]) {
    const transport = modern ? "modern" : "legacy";
    test(`${accel}, ${transport}: the link is up and the MAC comes from config space`, async () => {
      const r = await runGuest(peer, ["info"], { accel, modern });
      assert.equal(r.status, 0, r.stdout + r.stderr);
      const info = lastJson<{ mac: string; mtu: number; linkUp: boolean; refreshedLink: boolean; headerLength: number; version: number; offload: { mergeableRxBuffers: boolean }; rxAtStart: number; buffers: { rx: number } }>(r.stdout);
      assert.equal(info.mac, "52:54:00:12:34:56"); // QEMU's default for the first NIC
      assert.equal(info.linkUp, true);
      assert.equal(info.refreshedLink, true);
      assert.equal(info.mtu, 1500);
      assert.equal(info.version, modern ? 2 : 1);
      assert.equal(info.offload.mergeableRxBuffers, true);
      assert.equal(info.headerLength, 12);
      // 64 receive buffers posted at start-up, the other 192 in the first idle passes
      assert.deepEqual([info.rxAtStart, info.buffers.rx], [64, 256]);
    });

    test(`${accel}, ${transport}: 400 frames of 42..1514 bytes (ARP-sized, broadcast, max-size) come back byte for byte`, async () => {
      const before = { frames: peer.frames, broadcasts: peer.broadcasts };
      peer.sizes.clear();
      const r = await runGuest(peer, ["echo", "400", "32"], { accel, modern });
      assertEcho(r, 400);
      assert.equal(peer.frames - before.frames, 400);
      assert.equal(peer.broadcasts - before.broadcasts, 57); // seq % 7 === 3
      for (const size of [42, 60, 1513, 1514]) assert.ok(peer.sizes.has(size), `host never saw a ${size}-byte frame`);
      assert.ok(Math.max(...peer.sizes) === 1514);
    });
  }

  test(`${accel}: without VIRTIO_NET_F_MRG_RXBUF the legacy header is 10 bytes and frames still echo exactly`, async () => {
    const globals = ["virtio-net-device.mrg_rxbuf=off"];
    const info = lastJson<{ headerLength: number; offload: { mergeableRxBuffers: boolean } }>((await runGuest(peer, ["info"], { accel, globals })).stdout);
    assert.equal(info.headerLength, 10);
    assert.equal(info.offload.mergeableRxBuffers, false);
    assertEcho(await runGuest(peer, ["echo", "300", "32"], { accel, globals }), 300);
  });

  test(`${accel}: frames spread over 256-byte mergeable receive buffers are reassembled exactly`, async () => {
    const c = assertEcho(await runGuest(peer, ["echo", "300", "16", "256"], { accel }), 300);
    assert.ok(c.rxMerged > 200, `only ${c.rxMerged} frames were reassembled`);
  });

  if (!full) return;

  test(`${accel}, modern: frames spread over mergeable buffers are reassembled exactly`, async () => {
    const c = assertEcho(await runGuest(peer, ["echo", "200", "16", "256"], { accel, modern: true }), 200);
    assert.ok(c.rxMerged > 100);
  });

  test(`${accel}: multiqueue is negotiated when offered, with one queue pair in use`, async () => {
    const r = await runGuest(peer, ["info"], { accel, globals: ["virtio-net-device.mq=on"] });
    const info = lastJson<{ offload: { multiqueue: boolean; maxQueuePairs: number } }>(r.stdout);
    assert.equal(info.offload.multiqueue, true);
    assert.equal(info.offload.maxQueuePairs, 1);
    assertEcho(await runGuest(peer, ["echo", "100", "16"], { accel, globals: ["virtio-net-device.mq=on"] }), 100);
  });

  test(`${accel}: transmitWithChecksum produces UDP checksums the host verifies (software path: dgram offers no VIRTIO_NET_F_CSUM)`, async () => {
    const before = { good: peer.udpChecksumsGood, bad: peer.udpChecksumsBad };
    const r = await runGuest(peer, ["csum", "60"], { accel });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^csum echoed ok=60 bad=0$/m);
    assert.equal(peer.udpChecksumsGood - before.good, 60);
    assert.equal(peer.udpChecksumsBad - before.bad, 0);
  });

  test(`${accel}: a transmit burst larger than the ring meets back-pressure and every frame is sent`, async () => {
    peer.echo = false;
    try {
      const before = peer.frames;
      const r = await runGuest(peer, ["tx", "3000", "60"], { accel });
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^tx sent=3000 /m);
      const c = lastJson<Counters>(r.stdout);
      assert.equal(c.broken, null);
      assert.equal(c.txFrames, 3000);
      assert.ok(c.txFull > 0, "the ring never filled");
      await new Promise((res) => setTimeout(res, 200));
      // Loopback UDP may drop when the host socket's buffer overflows; nearly all must arrive.
      assert.ok(peer.frames - before >= 2900, `host received ${peer.frames - before} of 3000`);
    } finally {
      peer.echo = true;
    }
  });
}

describe(`virtio-net under ${defaultAccel}`, () => suite(defaultAccel, true));
if (otherAccel !== undefined) describe(`virtio-net under ${otherAccel}`, () => suite(otherAccel, false));
