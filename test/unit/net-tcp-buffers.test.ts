import assert from "node:assert/strict";
import { test } from "node:test";
import { ByteRing } from "../../kernel/net/socket/tcp-buffers.ts";

const bytes = (from: number, count: number): Uint8Array => Uint8Array.from({ length: count }, (_, i) => (from + i) & 255);

test("ByteRing: whole and partial writes, copyOut and take across the wrap", () => {
  const ring = new ByteRing(8);
  assert.equal(ring.write(bytes(0, 6), 0, 6), 6); // a whole buffer
  assert.deepEqual(ring.take(4), bytes(0, 4)); // contiguous
  assert.equal(ring.write(bytes(10, 10), 2, 8), 6); // part of a buffer, cut at the free space, wrapping
  assert.equal(ring.length, 8);
  assert.equal(ring.free, 0);
  const out = new Uint8Array(9);
  ring.copyOut(1, 7, out, 2); // across the wrap
  assert.deepEqual(out, Uint8Array.of(0, 0, 5, 12, 13, 14, 15, 16, 17));
  assert.deepEqual(ring.take(5), Uint8Array.of(4, 5, 12, 13, 14)); // across the wrap
  assert.deepEqual(ring.take(3), bytes(15, 3));
  assert.equal(ring.length, 0);
  assert.equal(ring.write(bytes(0, 0), 0, 0), 0);
});
