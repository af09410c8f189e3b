import assert from "node:assert/strict";
import { test } from "node:test";
import { TcpSockets, type TcpSocket } from "../../kernel/net/socket/tcp-api.ts";
import type { TcpConfig } from "../../kernel/net/socket/tcp-config.ts";
import { ADDRESS_B, randomBytes, readAll, seededRandom, sha256, SimulatedLink, type LinkFaults } from "./net-tcp-harness.ts";

async function writeInChunks(socket: TcpSocket, data: Uint8Array, chunk: number): Promise<void> {
  for (let offset = 0; offset < data.length; offset += chunk) await socket.write(data.subarray(offset, offset + chunk));
  socket.end();
}

/** Both directions at once: A uploads `up` bytes, B sends `down` bytes back, both verified. */
async function exchange(faults: LinkFaults, up: number, down: number, config: Partial<TcpConfig> = {}, limit = 600_000) {
  const link = new SimulatedLink(faults, config);
  const apiA = new TcpSockets(link.a, () => link.now);
  const apiB = new TcpSockets(link.b, () => link.now);
  const upload = randomBytes(up, 11);
  const download = randomBytes(down, 22);
  const server = apiB.listen(8080, { backlog: 4 });
  let finished = 0;
  let received: Uint8Array | null = null;
  let echoed: Uint8Array | null = null;
  const serverSide = (async () => {
    const socket = await server.accept();
    const [data] = await Promise.all([readAll(socket), writeInChunks(socket, download, 10_000)]);
    received = data;
    finished++;
  })();
  const clientSide = (async () => {
    const socket = await apiA.connect(ADDRESS_B, 8080);
    const [data] = await Promise.all([readAll(socket), writeInChunks(socket, upload, 7_777)]);
    echoed = data;
    finished++;
  })();
  await link.run(() => finished === 2, limit);
  await Promise.all([serverSide, clientSide]);
  assert.equal(received!.length, up);
  assert.equal(sha256(received!), sha256(upload));
  assert.equal(echoed!.length, down);
  assert.equal(sha256(echoed!), sha256(download));
  // Both sides closed; the one that closed last-ish sits in TIME-WAIT, then everything is gone.
  await link.run(() => link.a.size === 0 && link.b.size === 0, 120_000);
  return link;
}

test("a clean link moves data both ways byte-exact and closes both sides", async () => {
  const link = await exchange({ delay: 5 }, 300_000, 200_000);
  assert.equal(link.a.counters.retransmissions, 0);
  assert.equal(link.b.counters.retransmissions, 0);
});

test("multi-megabyte transfers both ways survive 5% loss, reordering and duplication", async () => {
  const started = performance.now();
  const link = await exchange({ loss: 0.05, reorder: 0.1, duplicate: 0.02, delay: 10, seed: 7 }, 2_000_000, 2_000_000);
  const elapsed = performance.now() - started;
  assert.ok(link.a.counters.retransmissions + link.b.counters.retransmissions > 0);
  assert.ok(link.a.counters.fastRetransmits + link.b.counters.fastRetransmits > 0, "fast retransmit used");
  console.log(`# 2 MB each way at 5% loss: ${link.packets} packets, ${link.dropped} dropped, ` +
    `${link.now.toFixed(0)} ms simulated, ${elapsed.toFixed(0)} ms wall; ` +
    `rtx A=${link.a.counters.retransmissions} B=${link.b.counters.retransmissions}, fast A=${link.a.counters.fastRetransmits} B=${link.b.counters.fastRetransmits}, timeouts A=${link.a.counters.timeouts}`);
});

for (const seed of [1, 2, 3]) {
  test(`lossy link, seed ${seed}: no timestamps or window scaling (Karn RTT sampling), small buffers under back-pressure`, async () => {
    const link = await exchange({ loss: 0.05, reorder: 0.15, duplicate: 0.05, delay: 3, seed }, 600_000, 400_000,
      { timestamps: false, windowScaling: false, sendBufferSize: 16384, receiveBufferSize: 16384, outOfOrderLimit: 8192 });
    assert.ok(link.a.counters.retransmissions + link.b.counters.retransmissions > 0);
  });
}

test("heavy loss (20%) still completes byte-exact", async () => {
  const link = await exchange({ loss: 0.2, reorder: 0.1, delay: 5, seed: 99 }, 200_000, 200_000);
  assert.ok(link.a.counters.timeouts === 0 && link.b.counters.timeouts === 0, "no connection gave up");
});

test("20 randomized links and configurations (asymmetric timestamps, scaling off, tiny buffers, Nagle on/off) all deliver byte-exact", async () => {
  for (let seed = 100; seed < 120; seed++) {
    const random = seededRandom(seed);
    const faults = { loss: random() * 0.15, reorder: random() * 0.3, duplicate: random() * 0.1, delay: 1 + random() * 30, seed };
    const small = random() < 0.5;
    const config: Partial<TcpConfig> = {
      timestamps: random() < 0.5, windowScaling: random() < 0.7,
      sendBufferSize: small ? 4096 + Math.floor(random() * 20000) : 65536,
      receiveBufferSize: small ? 2048 + Math.floor(random() * 20000) : 65536,
      outOfOrderLimit: Math.floor(random() * 30000), delayedAckTimeout: 1 + random() * 200,
    };
    const link = new SimulatedLink(faults, config, { ...config, timestamps: random() < 0.5 });
    const client = new TcpSockets(link.a, () => link.now);
    const server = new TcpSockets(link.b, () => link.now).listen(80);
    const upload = randomBytes(Math.floor(random() * 300_000), seed);
    const download = randomBytes(Math.floor(random() * 300_000), seed + 1000);
    const noDelay = random() < 0.5;
    let finished = 0;
    const results: Uint8Array[] = [];
    const sides = Promise.all([
      (async () => {
        const socket = await server.accept();
        [results[0]] = await Promise.all([readAll(socket), writeInChunks(socket, download, 5000)]);
        finished++;
      })(),
      (async () => {
        const socket = await client.connect(ADDRESS_B, 80);
        socket.setNoDelay(noDelay);
        [results[1]] = await Promise.all([readAll(socket), writeInChunks(socket, upload, 3000)]);
        finished++;
      })(),
    ]);
    await link.run(() => finished === 2, 3_000_000);
    await sides;
    assert.equal(sha256(results[0]!), sha256(upload), `seed ${seed}: upload`);
    assert.equal(sha256(results[1]!), sha256(download), `seed ${seed}: download`);
    await link.run(() => link.a.size === 0 && link.b.size === 0, 600_000);
  }
});
