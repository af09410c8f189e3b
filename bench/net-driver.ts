/**
 * virtio-net driver benchmark (issue 3): Ethernet frames per second between the guest driver
 * (test/fixtures/apps/net-echo.ts, raw frames, no TCP/IP stack) and a Node peer on the host,
 * through QEMU's `-netdev dgram` backend (one frame = one UDP datagram on 127.0.0.1):
 * guest→host, host→guest, and echo round trips (one in flight, and 32 in flight). Baseline in
 * the same run: the same Node peer code exchanging the same datagrams with a second host
 * socket instead of QEMU (the ceiling the host side of this set-up can carry).
 */
import { spawn } from "node:child_process";
import { createSocket, type Socket } from "node:dgram";
import { join } from "node:path";
import { buildImage } from "../host/build.ts";
import { kvmUsable, qemuArgs, QEMU_BINARY, type Accel } from "../host/run.ts";
import { median, table } from "./lib.ts";

const RUNS = 3;
const TX_FRAMES = 20000;
const RX_SECONDS = 2;
const RTT_FRAMES = 2000;
const WINDOW_FRAMES = 20000;
const WINDOW = 32;
const FRAME = 60;
const BURST = 32;

async function bound(): Promise<{ socket: Socket; port: number }> {
  const socket = createSocket("udp4");
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", r));
  try {
    socket.setRecvBufferSize(4 << 20);
  } catch {
    // rmem_max caps it; keep the default
  }
  return { socket, port: socket.address().port };
}

function frame(ethertype: number): Buffer {
  const f = Buffer.alloc(FRAME);
  f.set([0x52, 0x54, 0, 0x12, 0x34, 0x56], 0); // QEMU's default MAC for the guest
  f.set([0x02, 0, 0, 0, 0, 0x01], 6);
  f.writeUInt16BE(ethertype, 12);
  return f;
}

/** Sends `frame` to `port` in bursts (yielding between them) for `ms`; returns datagrams sent. */
async function blast(socket: Socket, port: number, ms: number): Promise<number> {
  const f = frame(0x88b5);
  const end = Date.now() + ms;
  let sent = 0;
  while (Date.now() < end) {
    for (let i = 0; i < BURST; i++) socket.send(f, port, "127.0.0.1");
    sent += BURST;
    await new Promise((r) => setImmediate(r));
  }
  return sent;
}

interface Peer {
  socket: Socket;
  port: number;
  qemuPort: number;
  echo: boolean;
  received: number;
}

async function startPeer(): Promise<Peer> {
  const { socket, port } = await bound();
  const spare = await bound();
  const qemuPort = spare.port;
  await new Promise<void>((r) => spare.socket.close(() => r()));
  const peer: Peer = { socket, port, qemuPort, echo: true, received: 0 };
  socket.on("message", (m) => {
    peer.received++;
    if (!peer.echo) return;
    const reply = Buffer.from(m);
    m.copy(reply, 0, 6, 12);
    m.copy(reply, 6, 0, 6);
    socket.send(reply, qemuPort, "127.0.0.1");
  });
  return peer;
}

/** Boots the guest app with `appArgs`; calls `onReady` at its "ready" line; resolves with stdout. */
function guest(image: string, accel: Accel, peer: Peer, appArgs: string[], onReady?: () => void): Promise<string> {
  const netdev = `dgram,local.type=inet,local.host=127.0.0.1,local.port=${peer.qemuPort},remote.type=inet,remote.host=127.0.0.1,remote.port=${peer.port}`;
  const argv = qemuArgs({ image, accel, memBytes: 64 << 20, cpus: 1, ports: [], appArgs, netdev });
  return new Promise((resolve, reject) => {
    const child = spawn(QEMU_BINARY, argv, { stdio: ["pipe", "pipe", "ignore"] });
    let stdout = "";
    let ready = false;
    child.stdout.setEncoding("utf8").on("data", (c: string) => {
      stdout += c;
      if (!ready && stdout.includes("ready ")) {
        ready = true;
        onReady?.();
      }
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.on("error", reject);
    child.on("close", (status) => {
      clearTimeout(timer);
      if (status !== 1) reject(new Error(`net benchmark guest ${appArgs.join(" ")} failed (QEMU status ${status}): ${stdout}`));
      else resolve(stdout);
    });
  });
}

const perSecond = (stdout: string, what: string): number => {
  const m = new RegExp(`^${what} .*perSecond=(\\d+)`, "m").exec(stdout);
  if (!m) throw new Error(`no '${what}' result in: ${stdout}`);
  return Number(m[1]);
};

interface Figures {
  tx: number;
  rx: number;
  rtt: number;
  windowed: number;
  notes: string;
}

async function measureGuest(image: string, accel: Accel): Promise<Figures> {
  const peer = await startPeer();
  try {
    peer.echo = false;
    const before = peer.received;
    const txOut = await guest(image, accel, peer, ["tx", String(TX_FRAMES), String(FRAME)]);
    const tx = perSecond(txOut, "tx");
    const txArrived = peer.received - before;

    let blasted = 0;
    const rxOut = await guest(image, accel, peer, ["rx", String(RX_SECONDS + 10)], () => {
      void blast(peer.socket, peer.qemuPort, RX_SECONDS * 1000).then((n) => {
        blasted = n;
        setTimeout(() => peer.socket.send(frame(0x88b6), peer.qemuPort, "127.0.0.1"), 100);
      });
    });
    const rx = perSecond(rxOut, "rx");
    const rxGot = Number(/frames=(\d+)/.exec(rxOut)?.[1] ?? 0);

    peer.echo = true;
    const rtt = perSecond(await guest(image, accel, peer, ["ping", String(RTT_FRAMES), "1", String(FRAME)]), "ping");
    const windowed = perSecond(await guest(image, accel, peer, ["ping", String(WINDOW_FRAMES), String(WINDOW), String(FRAME)]), "ping");
    const notes = `host got ${txArrived}/${TX_FRAMES} sent; guest got ${rxGot}/${blasted} blasted`;
    return { tx, rx, rtt, windowed, notes };
  } finally {
    peer.socket.close();
  }
}

/** The same datagrams between two host sockets (no QEMU): what the host side alone carries. */
async function measureHost(): Promise<Figures> {
  const a = await bound();
  const b = await bound();
  let received = 0;
  let echo = false;
  b.socket.on("message", (m) => {
    received++;
    if (echo) b.socket.send(m, a.port, "127.0.0.1");
  });
  try {
    const t0 = performance.now();
    const sent = await blast(a.socket, b.port, RX_SECONDS * 1000);
    await new Promise((r) => setTimeout(r, 100));
    const oneWayReceived = received;
    const oneWay = (oneWayReceived / (performance.now() - t0 - 100)) * 1000;
    echo = true;
    const pingPong = async (n: number, window: number): Promise<number> => {
      const f = frame(0x88b5);
      let got = 0;
      let out = 0;
      const start = performance.now();
      await new Promise<void>((done) => {
        a.socket.removeAllListeners("message");
        a.socket.on("message", () => {
          got++;
          if (got >= n) done();
          else if (out < n) { out++; a.socket.send(f, b.port, "127.0.0.1"); }
        });
        for (; out < Math.min(window, n); out++) a.socket.send(f, b.port, "127.0.0.1");
      });
      return (n / (performance.now() - start)) * 1000;
    };
    const rtt = await pingPong(RTT_FRAMES, 1);
    const windowed = await pingPong(WINDOW_FRAMES, WINDOW);
    return { tx: oneWay, rx: oneWay, rtt, windowed, notes: `host socket → host socket; ${oneWayReceived}/${sent} one-way datagrams arrived` };
  } finally {
    a.socket.close();
    b.socket.close();
  }
}

/** Runs the benchmark and returns its markdown section for BENCHMARKS.md. */
export async function netDriverBenchmark(work: string): Promise<string> {
  const image = join(work, "net-echo.elf");
  await buildImage({ entry: join(import.meta.dirname, "../test/fixtures/apps/net-echo.ts"), output: image });
  const accels: Accel[] = kvmUsable().ok ? ["kvm", "tcg"] : ["tcg"];
  const fmt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "n/a");
  const rows: (string | number)[][] = [];
  const summarize = (label: string, runs: Figures[]) => {
    const m = (k: keyof Omit<Figures, "notes">) => median(runs.map((r) => r[k]));
    rows.push([label, fmt(m("tx")), fmt(m("rx")), fmt(m("rtt")), fmt(m("windowed")), runs[runs.length - 1]!.notes]);
    console.log(`net-driver ${label}: tx ${fmt(m("tx"))}/s, rx ${fmt(m("rx"))}/s, rtt ${fmt(m("rtt"))}/s, window ${WINDOW} ${fmt(m("windowed"))}/s`);
  };
  const host: Figures[] = [];
  for (const accel of accels) {
    const runs: Figures[] = [];
    for (let i = 0; i < RUNS; i++) {
      runs.push(await measureGuest(image, accel));
      host.push(await measureHost());
    }
    summarize(`guest (${accel})`, runs);
  }
  summarize("host only (baseline)", host);
  return [
    "## Devices: virtio-net frames (issue 3)",
    "",
    `Medians of ${RUNS} runs, ${FRAME}-byte frames. Guest: \`test/fixtures/apps/net-echo.ts\` driving the`,
    "virtio-net driver directly (no TCP/IP stack; legacy virtio-mmio, mergeable buffers, EVENT_IDX),",
    "QEMU `-netdev dgram` to a Node peer on 127.0.0.1. guest→host: the guest sends",
    `${TX_FRAMES} frames as fast as transmit back-pressure allows (rate until the device completed the last).`,
    `host→guest: the peer sends bursts of ${BURST} for ${RX_SECONDS} s; rate of frames the guest received`,
    "(QEMU drops what its socket cannot take). Echo: the peer swaps MACs and returns each frame; round",
    `trips/s with 1 and ${WINDOW} frames in flight. Baseline: the same peer code against a second host`,
    "socket instead of QEMU, in the same run.",
    "",
    table(["", "guest→host (frames/s)", "host→guest (frames/s)", "echo, 1 in flight (round trips/s)", `echo, ${WINDOW} in flight (frames/s)`, "notes"], rows),
    "",
  ].join("\n");
}
