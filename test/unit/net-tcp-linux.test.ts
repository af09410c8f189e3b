/**
 * Interop smoke test with Linux's own TCP as the peer. The test creates a network namespace
 * with a TUN device (IFF_TUN: raw IPv4, no Ethernet, so no ARP is needed); a tiny Python
 * helper inside the namespace opens /dev/net/tun and relays packets over its stdin/stdout
 * (2-byte length prefix). Our TcpStack runs here in Node behind a minimal IPv4 shim.
 * Skipped unless running as root with `ip`, `python3` and /dev/net/tun available.
 */
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { type IpSender, PROTOCOL_TCP, parseIpv4 } from "../../kernel/net/ip.ts";
import { checksum } from "../../kernel/net/wire/checksum.ts";
import { TcpStack } from "../../kernel/net/socket/tcp.ts";
import { type TcpSocket, TcpSockets } from "../../kernel/net/socket/tcp-api.ts";
import { seededRandom } from "./net-tcp-harness.ts";

const LINUX = parseIpv4("10.99.0.1");
const TORITO = parseIpv4("10.99.0.2");

const RELAY = String.raw`
import fcntl, os, random, struct, subprocess, sys, threading
loss = float(sys.argv[1]); rng = random.Random(5)
fd = os.open('/dev/net/tun', os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', b'tt0', 0x0001 | 0x1000))
subprocess.check_call(['ip', 'addr', 'add', '10.99.0.1/24', 'dev', 'tt0'])
subprocess.check_call(['ip', 'link', 'set', 'tt0', 'up'])
out = sys.stdout.buffer
out.write(b'\x00\x00'); out.flush()  # ready
def up():
    while True:
        data = os.read(fd, 65535)
        if rng.random() < loss: continue
        out.write(struct.pack('>H', len(data)) + data); out.flush()
threading.Thread(target=up, daemon=True).start()
inp = sys.stdin.buffer
while True:
    head = inp.read(2)
    if len(head) < 2: break
    data = inp.read(struct.unpack('>H', head)[0])
    if rng.random() < loss: continue
    os.write(fd, data)
`;

const LINUX_PEERS = String.raw`
import hashlib, socket, sys, threading, time
def echo(conn):
    while True:
        data = conn.recv(65536)
        if not data: break
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)
    conn.close()
server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(('10.99.0.1', 9000)); server.listen(8)
def serve():
    while True:
        conn, _ = server.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()
threading.Thread(target=serve, daemon=True).start()
print('listening', flush=True)
sys.stdin.readline()  # go: act as a client of our stack
payload = bytes((i * 7 + 3) & 255 for i in range(int(sys.argv[1])))
client = socket.create_connection(('10.99.0.2', 9001), timeout=20)
def send():
    client.sendall(payload); client.shutdown(socket.SHUT_WR)
threading.Thread(target=send, daemon=True).start()
got = bytearray()
while True:
    data = client.recv(65536)
    if not data: break
    got += data
print('client', len(got), hashlib.sha256(got).hexdigest(), hashlib.sha256(payload).hexdigest(), flush=True)
sys.stdin.readline()
`;

function canRun(): boolean {
  if (process.getuid?.() !== 0 || !existsSync("/dev/net/tun")) return false;
  try {
    execFileSync("ip", ["-V"], { stdio: "ignore" });
    execFileSync("python3", ["-V"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** IPv4 shim over the relay's stdin; returns the sender and a packet parser. */
function ipOverRelay(relay: ChildProcessWithoutNullStreams): IpSender {
  let identification = 0;
  return {
    address: TORITO,
    maxSegment: 1480,
    send(destination, protocol, length, fill) {
      const frame = new Uint8Array(2 + 20 + length);
      const total = 20 + length;
      frame[0] = total >> 8; frame[1] = total;
      const ip = frame.subarray(2);
      ip[0] = 0x45; ip[2] = total >> 8; ip[3] = total; ip[4] = identification >> 8; ip[5] = identification++;
      ip[6] = 0x40; ip[8] = 64; ip[9] = protocol;
      ip[12] = TORITO >>> 24; ip[13] = TORITO >>> 16; ip[14] = TORITO >>> 8; ip[15] = TORITO;
      ip[16] = destination >>> 24; ip[17] = destination >>> 16; ip[18] = destination >>> 8; ip[19] = destination;
      const sum = checksum(ip, 0, 20);
      ip[10] = sum >> 8; ip[11] = sum;
      fill(ip, 20);
      relay.stdin.write(frame);
      return true;
    },
  };
}

const skip = !canRun() && "needs root, ip, python3, /dev/net/tun";

test("interop with Linux TCP over a TUN device: both directions, 1 MiB each, byte-exact", { skip, timeout: 60_000 }, async () => {
  await interop(0, 1 << 20);
});

test("interop with Linux TCP with 3% loss both ways (dropped in the relay): 256 KiB each way, byte-exact", { skip, timeout: 60_000 }, async () => {
  await interop(0.03, 1 << 18);
});

async function interop(loss: number, size: number): Promise<void> {
  const namespace = `torito-tcp-${process.pid}-${Math.round(loss * 100)}`;
  execFileSync("ip", ["netns", "add", namespace]);
  const children: ChildProcessWithoutNullStreams[] = [];
  let timer: NodeJS.Timeout | undefined;
  try {
    execFileSync("ip", ["netns", "exec", namespace, "ip", "link", "set", "lo", "up"]);
    const relay = spawn("ip", ["netns", "exec", namespace, "python3", "-u", "-c", RELAY, String(loss)]);
    children.push(relay);
    const started = performance.now();
    const clock = () => performance.now() - started;
    const stack = new TcpStack(ipOverRelay(relay), { isnSecret: new Uint8Array(16).fill(7) });
    const api = new TcpSockets(stack, clock);

    const drive = () => {
      const now = clock();
      if (stack.pollAt() <= now) stack.poll(now);
      const next = stack.pollAt();
      clearTimeout(timer);
      if (next !== Infinity) timer = setTimeout(drive, Math.max(0, Math.min(next - clock(), 1000)));
      else timer = undefined;
    };
    let ready!: () => void;
    const relayReady = new Promise<void>((resolve) => { ready = resolve; });
    let pending = Buffer.alloc(0);
    let sawReady = false;
    relay.stdout.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2) {
        const length = pending.readUInt16BE(0);
        if (pending.length < 2 + length) break;
        const packet = new Uint8Array(pending.subarray(2, 2 + length));
        pending = pending.subarray(2 + length);
        if (!sawReady) { sawReady = true; ready(); continue; }
        if ((packet[0]! >> 4) !== 4 || packet[9] !== PROTOCOL_TCP) continue;
        const headerLength = (packet[0]! & 15) * 4;
        const total = (packet[2]! << 8) | packet[3]!;
        const source = ((packet[12]! << 24) | (packet[13]! << 16) | (packet[14]! << 8) | packet[15]!) >>> 0;
        const destination = ((packet[16]! << 24) | (packet[17]! << 16) | (packet[18]! << 8) | packet[19]!) >>> 0;
        stack.input(source, destination, packet.subarray(headerLength, total), clock());
      }
      drive();
    });
    await relayReady;

    const peers = spawn("ip", ["netns", "exec", namespace, "python3", "-u", "-c", LINUX_PEERS, String(size)]);
    children.push(peers);
    const lines: string[] = [];
    const waiters: (() => void)[] = [];
    let buffered = "";
    peers.stdout.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      let index;
      while ((index = buffered.indexOf("\n")) >= 0) {
        lines.push(buffered.slice(0, index));
        buffered = buffered.slice(index + 1);
        for (const waiter of waiters.splice(0)) waiter();
      }
    });
    const nextLine = async (): Promise<string> => {
      while (lines.length === 0) await new Promise<void>((resolve) => waiters.push(resolve));
      return lines.shift()!;
    };
    assert.equal(await nextLine(), "listening");

    const readAll = async (socket: TcpSocket) => {
      const chunks: Uint8Array[] = [];
      for (let chunk = await socket.read(); chunk !== null; chunk = await socket.read()) chunks.push(chunk);
      return Buffer.concat(chunks);
    };

    // 1. Our client → Linux echo server.
    const random = seededRandom(3);
    const upload = new Uint8Array(size);
    for (let i = 0; i < upload.length; i++) upload[i] = (random() * 256) | 0;
    const t0 = performance.now();
    const pendingConnect = api.connect(LINUX, 9000);
    drive();
    const client = await pendingConnect;
    const [echoed] = await Promise.all([
      readAll(client),
      (async () => {
        for (let offset = 0; offset < upload.length; offset += 16384) { await client.write(upload.subarray(offset, offset + 16384)); drive(); }
        client.end();
        drive();
      })(),
    ]);
    const clientMs = performance.now() - t0;
    assert.equal(echoed.length, upload.length);
    assert.ok(Buffer.from(upload).equals(echoed), "echo from Linux is byte-exact");

    // 2. Linux client → our echo server.
    const server = api.listen(9001);
    const t1 = performance.now();
    peers.stdin.write("go\n");
    const accepted = await server.accept();
    for (let chunk = await accepted.read(); chunk !== null; chunk = await accepted.read()) { await accepted.write(chunk); drive(); }
    accepted.end();
    drive();
    const report = (await nextLine()).split(" ");
    const serverMs = performance.now() - t1;
    assert.equal(report[0], "client");
    assert.equal(Number(report[1]), size);
    assert.equal(report[2], report[3], "Linux got its own bytes back");
    console.log(`# Linux interop, ${loss * 100}% loss: ${size >> 10} KiB echo as client ${clientMs.toFixed(0)} ms, as server ${serverMs.toFixed(0)} ms; ` +
      `retransmissions ${stack.counters.retransmissions}, drops ${stack.counters.droppedChecksum + stack.counters.droppedMalformed}`);
    server.close();
    peers.stdin.write("done\n");
  } finally {
    clearTimeout(timer);
    for (const child of children) child.kill();
    try { execFileSync("ip", ["netns", "delete", namespace]); } catch { /* already gone */ }
  }
}
