import assert from "node:assert/strict";
import { test } from "node:test";
import { NeighborCache } from "../../kernel/net/iface/neighbor.ts";

const mac = (n: number): Uint8Array => new Uint8Array([0x52, 0x54, 0, 0, 0, n]);

function cache(options: ConstructorParameters<typeof NeighborCache>[2] = {}) {
  const requests: number[] = [];
  const delivered: { mac: number; packet: number }[] = [];
  const neighbors = new NeighborCache(
    (address) => requests.push(address),
    (to, packet) => delivered.push({ mac: to[5]!, packet: packet[0]! }),
    options,
  );
  return { neighbors, requests, delivered };
}

test("neighbour entries expire after their lifetime", () => {
  const { neighbors } = cache({ entryLifetime: 1000 });
  neighbors.update(1, mac(1), 0, true);
  assert.equal(neighbors.lookup(1, 999)?.[5], 1);
  assert.equal(neighbors.lookup(1, 1000), null);
});

test("RFC 826 merge: unsolicited information only refreshes entries we already have", () => {
  const { neighbors } = cache();
  assert.equal(neighbors.update(1, mac(1), 0, false), false);
  assert.equal(neighbors.lookup(1, 0), null);
  neighbors.update(1, mac(1), 0, true);
  assert.equal(neighbors.update(1, mac(9), 10, false), true);
  assert.equal(neighbors.lookup(1, 10)?.[5], 9);
});

test("the cache is bounded: the entry closest to expiry is evicted", () => {
  const { neighbors } = cache({ maxEntries: 3 });
  for (let i = 1; i <= 4; i++) neighbors.update(i, mac(i), i * 10, true);
  assert.equal(neighbors.size, 3);
  assert.equal(neighbors.lookup(1, 50), null);
  assert.ok(neighbors.lookup(4, 50));
});

test("queued packets leave in order on resolution; the queue is bounded per neighbour and in total", () => {
  const { neighbors, requests, delivered } = cache({ maxPendingPerNeighbor: 2, maxPendingTotal: 3 });
  assert.equal(neighbors.enqueue(1, new Uint8Array([10]), 0), "queued");
  assert.equal(neighbors.enqueue(1, new Uint8Array([11]), 0), "queued");
  assert.equal(neighbors.enqueue(1, new Uint8Array([12]), 0), "neighbor-queue-full");
  assert.equal(neighbors.enqueue(2, new Uint8Array([20]), 0), "queued");
  assert.equal(neighbors.enqueue(3, new Uint8Array([30]), 0), "neighbor-queue-full");
  assert.deepEqual(requests, [1, 2]);
  neighbors.update(1, mac(1), 5, true);
  assert.deepEqual(delivered, [{ mac: 1, packet: 10 }, { mac: 1, packet: 11 }]);
  assert.equal(neighbors.pendingPackets, 1);
});

test("requests are retried every interval and abandoned after the last one", () => {
  const { neighbors, requests } = cache({ requestInterval: 500, maxRequests: 2 });
  neighbors.enqueue(7, new Uint8Array([1]), 0);
  assert.equal(neighbors.pollAt(), 500);
  neighbors.poll(499);
  assert.deepEqual(requests, [7]);
  neighbors.poll(500);
  assert.deepEqual(requests, [7, 7]);
  neighbors.poll(1000);
  assert.equal(neighbors.droppedUnresolved, 1);
  assert.equal(neighbors.pollAt(), Infinity);
});
