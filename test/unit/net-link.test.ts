import assert from "node:assert/strict";
import { test } from "node:test";
import { createLink, createRandom } from "./net-helpers.ts";

function send(link: ReturnType<typeof createLink>, count: number): number[] {
  for (let i = 0; i < count; i++) {
    const buffer = link.a.txBuffer(1)!;
    buffer[0] = i;
    link.a.transmit(buffer, 1);
  }
  const received: number[] = [];
  link.b.setReceiveHandler((f) => received.push(f[0]!));
  link.deliver();
  link.deliver(); // releases held (reordered) frames
  link.b.poll();
  return received;
}

test("a perfect link delivers every frame in order, through poll()", () => {
  const link = createLink();
  assert.deepEqual(send(link, 5), [0, 1, 2, 3, 4]);
  assert.equal(link.a.transmitCount, 5);
  assert.equal(link.b.receiveCount, 5);
});

test("faults are applied per frame and are reproducible from the seed", () => {
  const options = { loss: 0.2, duplicate: 0.2, reorder: 0.2, seed: 5 };
  const first = send(createLink(options), 200);
  const second = send(createLink(options), 200);
  assert.deepEqual(first, second);
  const link = createLink(options);
  send(link, 200);
  assert.ok(link.stats.lost > 10 && link.stats.duplicated > 10 && link.stats.reordered > 10, JSON.stringify(link.stats));
  assert.notDeepEqual(first, [...first].sort((x, y) => x - y));
});

test("txBuffer applies back-pressure when the transmit queue is full", () => {
  const link = createLink();
  for (let i = 0; i < link.a.transmitQueueLimit; i++) link.a.transmit(link.a.txBuffer(60)!, 60);
  assert.equal(link.a.txBuffer(60), null);
  link.deliver();
  assert.ok(link.a.txBuffer(60));
  assert.equal(link.a.txBuffer(link.a.mtu + 15), null, "larger than MTU + Ethernet header");
});

test("the seeded PRNG is deterministic", () => {
  const a = createRandom(1);
  const b = createRandom(1);
  for (let i = 0; i < 10; i++) assert.equal(a.next(), b.next());
  assert.ok(createRandom(2).below(10) < 10);
});
