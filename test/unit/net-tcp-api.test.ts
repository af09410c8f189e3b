import assert from "node:assert/strict";
import { test } from "node:test";
import { TcpSockets } from "../../kernel/net/socket/tcp-api.ts";
import { TcpState } from "../../kernel/net/socket/tcp-connection.ts";
import { ADDRESS_A, ADDRESS_B, SimulatedLink } from "./net-tcp-harness.ts";

function pair(config = {}) {
  const link = new SimulatedLink({ delay: 2 }, config);
  return { link, client: new TcpSockets(link.a, () => link.now), server: new TcpSockets(link.b, () => link.now) };
}

/** Runs the link until a promise settles; returns its value. */
async function settle<T>(link: SimulatedLink, promise: Promise<T>): Promise<T> {
  let done = false;
  promise.then(() => { done = true; }, () => { done = true; });
  await link.run(() => done);
  return promise;
}

async function connected(config = {}) {
  const { link, client, server } = pair(config);
  const listener = server.listen(80);
  const [peer, socket] = await settle(link, Promise.all([listener.accept(), client.connect(ADDRESS_B, 80)]));
  return { link, client, server, peer, socket };
}

test("accept/connect expose the peer's address and ports", async () => {
  const { link, client, server } = pair();
  const listener = server.listen(80);
  const accepting = listener.accept();
  const connecting = client.connect(ADDRESS_B, 80);
  let done = false;
  const both = Promise.all([accepting, connecting]).then((r) => { done = true; return r; });
  await link.run(() => done);
  const [serverSide, clientSide] = await both;
  assert.equal(serverSide.remoteAddress, ADDRESS_A);
  assert.equal(serverSide.remotePort, clientSide.localPort);
  assert.equal(clientSide.remotePort, 80);
  assert.equal(serverSide.localPort, 80);
  assert.throws(() => server.listen(80), { code: "EADDRINUSE" });
});

test("write() waits under back-pressure and resolves as the peer reads", async () => {
  const { link, peer, socket } = await connected({ sendBufferSize: 8192, receiveBufferSize: 8192 });
  let written = false;
  const writing = socket.write(new Uint8Array(40_000).fill(9)).then(() => { written = true; });
  await link.run(() => peer.connection.readableLength === 8192, 10_000);
  await link.run(() => false, 2_000).catch(() => undefined);
  assert.equal(written, false, "16 KiB of buffers cannot hold 40 KB: the write is still pending");
  let received = 0;
  const reading = (async () => { while (received < 40_000) received += (await peer.read())!.length; })();
  await link.run(() => written && received === 40_000, 60_000);
  await Promise.all([writing, reading]);
});

test("read() returns null at EOF after end(), and write() after end() fails with EPIPE", async () => {
  const { link, peer, socket } = await connected();
  await socket.write(new TextEncoder().encode("hi"));
  socket.end();
  await assert.rejects(socket.write(new Uint8Array(1)), { code: "EPIPE" });
  let chunks: (Uint8Array | null)[] = [];
  await settle(link, (async () => { chunks = [await peer.read(), await peer.read()]; })());
  assert.equal(new TextDecoder().decode(chunks[0]!), "hi");
  assert.equal(chunks[1], null);
  assert.equal(peer.state, TcpState.CloseWait);
  peer.close();
  await link.run(() => socket.state === TcpState.TimeWait);
});

test("abort() on one side makes the other side's read() reject with ECONNRESET", async () => {
  const { link, peer, socket } = await connected();
  let error: unknown;
  peer.read().catch((e) => { error = e; });
  socket.abort();
  await link.run(() => error !== undefined);
  assert.equal((error as { code: string }).code, "ECONNRESET");
  await assert.rejects(peer.write(new Uint8Array(1)), { code: "ECONNRESET" });
});

test("connect() to a port nobody listens on rejects with ECONNREFUSED; closing a listener rejects accept()", async () => {
  const { link, client, server } = pair();
  await assert.rejects(settle(link, client.connect(ADDRESS_B, 81)), { code: "ECONNREFUSED" });
  const listener = server.listen(80);
  const accepting = listener.accept();
  listener.close();
  await assert.rejects(accepting, { code: "ECONNABORTED" });
});

test("readWith() calls back at once with buffered bytes, later when they arrive, with null at EOF and the error after a reset", async () => {
  const { link, peer, socket } = await connected();
  const got: (string | null)[] = [];
  const errors: unknown[] = [];
  const onChunk = (c: Uint8Array | null) => got.push(c === null ? null : new TextDecoder().decode(c));
  const onError = (e: unknown) => errors.push(e);
  // pending: called when the bytes arrive
  peer.readWith(onChunk, onError);
  assert.deepEqual(got, []);
  await socket.write(new TextEncoder().encode("one"));
  await link.run(() => got.length === 1);
  assert.deepEqual(got, ["one"]);
  // buffered: called synchronously
  await socket.write(new TextEncoder().encode("two"));
  await link.run(() => peer.connection.readableLength === 3);
  peer.readWith(onChunk, onError);
  assert.deepEqual(got, ["one", "two"]);
  // a second pending read is refused; cancelRead fails the first and keeps the stream usable
  peer.readWith(onChunk, onError);
  peer.readWith(onChunk, onError);
  assert.equal((errors[0] as { code: string }).code, "EPIPE");
  peer.cancelRead("cancelled");
  assert.equal(errors[1], "cancelled");
  socket.end();
  await link.run(() => peer.connection.atEndOfStream);
  peer.readWith(onChunk, onError);
  assert.deepEqual(got, ["one", "two", null]);
  socket.abort();
  await link.run(() => peer.connection.error !== null);
  peer.readWith(onChunk, onError);
  assert.equal((errors[2] as { code: string }).code, "ECONNRESET");
});

/** An 8-byte read target filled with dots, the counts its reads reported, and its text. */
function readTarget(): { target: Uint8Array; counts: number[]; onRead: (n: number) => void; text: (from: number, to: number) => string } {
  const target = new Uint8Array(8).fill(0x2e);
  const counts: number[] = [];
  return { target, counts, onRead: (n) => counts.push(n), text: (from, to) => new TextDecoder().decode(target.subarray(from, to)) };
}

test("readIntoWith() copies into the caller's buffer at its offset, at most what fits; 0 at EOF; a pending read is answered when bytes arrive, or by a reset", async () => {
  const { link, peer, socket } = await connected();
  const { target, counts, onRead, text } = readTarget();
  const errors: unknown[] = [];
  const onError = (e: unknown) => errors.push(e);
  // pending: the bytes go straight to target[2…] when they arrive
  peer.readIntoWith(target, 2, onRead, onError);
  await socket.write(new TextEncoder().encode("abc"));
  await link.run(() => counts.length === 1);
  assert.deepEqual(counts, [3]);
  assert.equal(text(0, 8), "..abc...");
  // buffered: at once, and no more than fits (the rest stays for the next read)
  await socket.write(new TextEncoder().encode("defgh"));
  await link.run(() => peer.connection.readableLength === 5);
  peer.readIntoWith(target, 5, onRead, onError);
  assert.deepEqual(counts, [3, 3]);
  assert.equal(text(0, 8), "..abcdef");
  peer.readIntoWith(target, 0, onRead, onError);
  assert.deepEqual(counts, [3, 3, 2]);
  assert.equal(text(0, 2), "gh");
  // a cancelled read copies nothing later
  peer.readIntoWith(target, 0, onRead, onError);
  peer.cancelRead("cancelled");
  assert.equal(errors[0], "cancelled");
  socket.end();
  await link.run(() => peer.connection.atEndOfStream);
  peer.readIntoWith(target, 0, onRead, onError);
  assert.deepEqual(counts, [3, 3, 2, 0]);
  assert.equal(text(0, 2), "gh");
  socket.abort();
  await link.run(() => peer.connection.error !== null);
  peer.readIntoWith(target, 0, onRead, onError);
  assert.equal((errors[1] as { code: string }).code, "ECONNRESET");
});

test("a pending readIntoWith() takes arriving bytes straight into its target, no more than fits; the rest is buffered in order; a cancelled or answered read takes nothing later", async () => {
  const { link, peer, socket } = await connected();
  const { target, counts, onRead, text } = readTarget();
  const onError = (e: unknown) => assert.fail(String(e));
  peer.readIntoWith(target, 5, onRead, onError);
  await socket.write(new TextEncoder().encode("abcdefgh"));
  await link.run(() => counts.length === 1);
  assert.deepEqual(counts, [3]);
  assert.equal(text(0, 8), ".....abc");
  assert.equal(peer.connection.readableLength, 5, "what did not fit stays buffered");
  target.fill(0x2e);
  await socket.write(new TextEncoder().encode("ij"));
  await link.run(() => peer.connection.readableLength === 7);
  assert.equal(text(0, 8), "........", "the answered read's target is not written again");
  peer.readIntoWith(target, 0, onRead, onError);
  assert.deepEqual(counts, [3, 7]);
  assert.equal(text(0, 7), "defghij");
  target.fill(0x2e);
  peer.readIntoWith(target, 0, onRead, () => undefined);
  peer.cancelRead("cancelled");
  await socket.write(new TextEncoder().encode("kl"));
  await link.run(() => peer.connection.readableLength === 2);
  assert.equal(text(0, 8), "........", "a cancelled read's target is not written");
  assert.deepEqual(counts, [3, 7]);
});

test("a pending readIntoWith() fails with the error of a reset", async () => {
  const { link, peer, socket } = await connected();
  const errors: unknown[] = [];
  peer.readIntoWith(new Uint8Array(4), 0, () => assert.fail("no bytes were sent"), (e) => errors.push(e));
  socket.abort();
  await link.run(() => errors.length === 1);
  assert.equal((errors[0] as { code: string }).code, "ECONNRESET");
});

test("tryWrite() buffers all of the bytes or none: false once they do not fit, while a write() waits, and after end()", async () => {
  const { link, peer, socket } = await connected({ sendBufferSize: 8192, receiveBufferSize: 8192 });
  assert.equal(socket.tryWrite(new Uint8Array(8000)), true);
  assert.equal(socket.tryWrite(new Uint8Array(193)), false, "8000 + 193 > 8192: nothing is written");
  assert.equal(socket.connection.unacknowledgedLength, 8000);
  assert.equal(socket.tryWrite(new Uint8Array(192)), true);
  const waiting = socket.write(new Uint8Array(10));
  await link.run(() => peer.connection.readableLength > 0);
  assert.equal(socket.tryWrite(new Uint8Array(1)), false, "a write() waits: tryWrite() must not overtake it");
  let received = 0;
  while (received < 8202) {
    await link.run(() => peer.connection.readableLength > 0);
    received += peer.connection.read().length;
  }
  await waiting;
  assert.equal(socket.tryWrite(new Uint8Array(0)), true);
  socket.end();
  assert.equal(socket.tryWrite(new Uint8Array(1)), false);
});
