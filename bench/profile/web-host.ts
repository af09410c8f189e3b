/**
 * The appliance's per-request path on the host, for profiling under qjs-prof: the real
 * kernel network unit (kernel/net/index.ts: Ipv4Interface, TcpStack, TcpSockets), the real
 * scheduler turn(), the real HTTP server (serve()) and the appliance's handler
 * (examples/static-web-server) over the packed site, with a scripted TCP client injecting
 * Ethernet frames into a TestNetDevice (keep-alive, like wrk: each request carries the ACK of
 * the previous response). What is NOT here: the virtio driver, MMIO notifies, interrupts.
 *   args: <packed site file> <connections> <requests per connection> <batch> <profile out | ->
 */
import "./prelude.ts";
import * as qjsOs from "os";
import { ImageFs } from "../../kernel/fs/imagefs.ts";
import { mount } from "../../kernel/fs/vfs.ts";
import { TextEncoder } from "../../kernel/encoding.ts";
import { setNetDeviceFinder } from "../../kernel/net/index.ts";
import { serve } from "../../kernel/net/http/serve.ts";
import { addPoller, clearInterval, clearTimeout, setInterval, setTimeout, turn } from "../../kernel/process/scheduler.ts";
import {
  createTcpOptions, fillTcpChecksum, parseTcpOptions, tcpAcknowledgment, tcpFlags, tcpHeaderLength, tcpHeaderLengthFor, tcpSequence, tcpDestinationPort,
  writeTcpHeader, TCP_ACK, TCP_PSH, TCP_SYN, type TcpHeaderFields,
} from "../../kernel/net/wire/tcp.ts";
import { serveDirectory } from "../../examples/static-web-server/static.ts";
import { Headers } from "../../kernel/web/headers.ts";
import { Request } from "../../kernel/web/request.ts";
import { Response } from "../../kernel/web/response.ts";
import { ReadableStream } from "../../kernel/web/streams.ts";
import { URL, URLSearchParams } from "../../kernel/web/url.ts";
import { TestNetDevice } from "../../test/unit/net-helpers.ts";

declare const scriptArgs: string[];
/** qjs's "os" module (esbuild leaves the import alone; these are the calls used here). */
const os = qjsOs as unknown as {
  open(path: string, flags: number): number; O_RDONLY: number; seek(fd: number, offset: number, whence: number): number;
  read(fd: number, buffer: ArrayBuffer, offset: number, length: number): number; close(fd: number): void;
  setTimeout(f: () => void, ms: number): void;
};
declare const __profStart: (us: number) => void;
declare const __profStop: (path: string) => number;
const g = globalThis as Record<string, unknown>;
Object.assign(g, { setTimeout, setInterval, clearTimeout, clearInterval, TextEncoder, Headers, Request, Response, ReadableStream, URL, URLSearchParams });
g.queueMicrotask ??= (f: () => void) => void Promise.resolve().then(f);

const [, sitePath, connArg, perConnArg, batchArg, profOut, clientArg] = scriptArgs;
/** "ts": the client sends RFC 7323 timestamps on every segment, as Linux peers (wrk over a tap) do. */
const TIMESTAMPS = clientArg === "ts";
const CONNECTIONS = Number(connArg ?? 30);
const PER_CONN = Number(perConnArg ?? 200);
const BATCH = Number(batchArg ?? 30);
const now = () => (g.__profNative as { now: () => number }).now();

function loadFile(path: string): ArrayBuffer {
  const fd = os.open(path, os.O_RDONLY);
  const size = os.seek(fd, 0, 2 /* SEEK_END */);
  os.seek(fd, 0, 0);
  const buf = new ArrayBuffer(Number(size));
  let at = 0;
  while (at < buf.byteLength) at += os.read(fd, buf, at, buf.byteLength - at);
  os.close(fd);
  return buf;
}
mount("/app", new ImageFs(loadFile(sitePath!)));

const SERVER = 0x0a000002, CLIENT = 0x0a000001;
const device = new TestNetDevice({ mac: new Uint8Array([0x52, 0x54, 0, 0x12, 0x34, 0x56]), transmitQueueLimit: 4096 });
const clientMac = new Uint8Array([0x52, 0x54, 0, 0, 0, 0x0a]);
setNetDeviceFinder(() => device);
// The driver polls itself in the guest; here a poller plays that part.
addPoller(() => (device.poll() > 0 ? true : false), { onIdle: () => false });
const server = serve({ port: 80 }, serveDirectory("/app"));

const header: TcpHeaderFields = {
  sourcePort: 0, destinationPort: 80, sequence: 0, acknowledgment: 0, flags: 0, window: 65535,
  maxSegmentSize: -1, windowScale: -1, sackPermitted: false, hasTimestamps: false, timestampValue: 0, timestampEcho: 0,
};
let clientClock = 1;
function frame(port: number, seq: number, ack: number, flags: number, payload: Uint8Array | null, mss = -1, echo = 0): Uint8Array {
  header.sourcePort = port; header.sequence = seq >>> 0; header.acknowledgment = ack >>> 0; header.flags = flags;
  header.maxSegmentSize = mss;
  header.hasTimestamps = TIMESTAMPS;
  header.timestampValue = clientClock++;
  header.timestampEcho = echo;
  const tcpLength = tcpHeaderLengthFor(header) + (payload?.length ?? 0);
  const f = new Uint8Array(14 + 20 + tcpLength);
  f.set(device.mac, 0); f.set(clientMac, 6); f[12] = 8; f[13] = 0;
  const ip = 14;
  f[ip] = 0x45; f[ip + 2] = (20 + tcpLength) >> 8; f[ip + 3] = (20 + tcpLength) & 255; f[ip + 8] = 64; f[ip + 9] = 6;
  f[ip + 12] = 10; f[ip + 15] = 1; f[ip + 16] = 10; f[ip + 19] = 2;
  let sum = 0;
  for (let i = ip; i < ip + 20; i += 2) sum += (f[i]! << 8) | f[i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  f[ip + 10] = (~sum >> 8) & 255; f[ip + 11] = ~sum & 255;
  const seg = f.subarray(34);
  writeTcpHeader(seg, header);
  if (payload) seg.set(payload, tcpLength - payload.length);
  fillTcpChecksum(CLIENT, SERVER, seg);
  return f;
}

interface Conn { port: number; seq: number; ack: number; waiting: boolean; responses: number; tsEcho: number }
const conns: Conn[] = [];
const byPort = new Map<number, Conn>();
let responses = 0, badResponses = 0;
const options = createTcpOptions();
function collect(): void {
  for (const f of device.takeTransmitted()) {
    if (f[12] !== 8 || f[13] !== 0 || f[14 + 9] !== 6) continue;
    const seg = f.subarray(34);
    const c = byPort.get(tcpDestinationPort(seg));
    if (!c) continue;
    const flags = tcpFlags(seg);
    if (TIMESTAMPS && parseTcpOptions(seg, options) && options.hasTimestamps) c.tsEcho = options.timestampValue;
    if (flags & TCP_SYN) { c.ack = (tcpSequence(seg) + 1) >>> 0; continue; }
    if (flags & 5) throw new Error(`connection ${c.port}: FIN/RST from the server`);
    const payload = seg.subarray(tcpHeaderLength(seg));
    if (payload.length === 0) continue;
    c.ack = (c.ack + payload.length) >>> 0;
    if (payload[0] === 72 /* H */) {
      if (payload[9] !== 50 || payload[10] !== 48 || payload[11] !== 48) badResponses++;
      c.waiting = false; c.responses++; responses++;
    }
  }
}
const tick = () => new Promise<void>((resolve) => os.setTimeout(resolve, 0));
async function pumpUntil(done: () => boolean, limit = 100000): Promise<void> {
  for (let i = 0; i < limit; i++) {
    turn(0);
    await tick();
    collect();
    if (done()) return;
  }
  throw new Error("stuck: no progress");
}

// ARP is learned from the client's first frames' replies: seed the neighbour entry the way an
// ARP exchange would (the interface needs our MAC to answer).
await pumpUntil(() => true);
const request = new TextEncoder().encode("GET /612.html HTTP/1.1\r\nHost: 10.0.0.2\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n");
// ARP request from the client, so the server learns its MAC like on a real wire
{
  const arp = new Uint8Array(42);
  arp.fill(255, 0, 6); arp.set(clientMac, 6); arp[12] = 8; arp[13] = 6;
  arp.set([0, 1, 8, 0, 6, 4, 0, 1], 14); arp.set(clientMac, 22); arp.set([10, 0, 0, 1], 28); arp.set([10, 0, 0, 2], 38);
  device.inject(arp);
  await pumpUntil(() => true);
}
for (let i = 0; i < CONNECTIONS; i++) {
  const c: Conn = { port: 40000 + i, seq: 1000 * i + 1, ack: 0, waiting: false, responses: 0, tsEcho: 0 };
  conns.push(c); byPort.set(c.port, c);
  device.inject(frame(c.port, c.seq, 0, TCP_SYN, null, 1460));
  c.seq++;
  await pumpUntil(() => c.ack !== 0);
  device.inject(frame(c.port, c.seq, c.ack, TCP_ACK, null, -1, c.tsEcho));
}
await pumpUntil(() => true);

async function run(perConn: number): Promise<number> {
  const t0 = now();
  const target = responses + perConn * CONNECTIONS;
  let next = 0;
  const sent = new Array<number>(CONNECTIONS).fill(0);
  while (responses < target) {
    // wrk-like: up to BATCH idle connections send their next request at once
    let injected = 0;
    for (let k = 0; k < CONNECTIONS && injected < BATCH; k++) {
      const c = conns[(next + k) % CONNECTIONS]!;
      if (c.waiting || sent[c.port - 40000]! >= perConn) continue;
      device.inject(frame(c.port, c.seq, c.ack, TCP_ACK | TCP_PSH, request, -1, c.tsEcho));
      c.seq = (c.seq + request.length) >>> 0;
      c.waiting = true;
      sent[c.port - 40000]!++;
      injected++;
    }
    next = (next + injected) % CONNECTIONS;
    await pumpUntil(() => conns.every((c) => !c.waiting) || (injected > 0 && responses > target - 1e9 && conns.filter((c) => c.waiting).length < injected));
  }
  return (now() - t0) * 1000 / (perConn * CONNECTIONS);
}

await run(10); // warm up
if (profOut && profOut !== "-") __profStart(100);
const us = await run(PER_CONN);
const samples = profOut && profOut !== "-" ? __profStop(profOut) : 0;
console.log(JSON.stringify({ connections: CONNECTIONS, batch: BATCH, requests: PER_CONN * CONNECTIONS, usPerRequest: Math.round(us * 10) / 10, badResponses, samples }));
server.close();
