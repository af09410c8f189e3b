/**
 * Adapts Node's `net` sockets to the kernel's ByteStream/StreamListener, so the guest's
 * HTTP server can be tested on the host against real clients (curl, wrk, raw sockets).
 * This replaces only the TCP layer underneath; the server code is the guest's own.
 */
import { createServer, type Server, type Socket } from "node:net";
import type { ByteStream, StreamListener } from "../../kernel/net/stream.ts";

function socketStream(socket: Socket): ByteStream {
  const queue: (Uint8Array | null)[] = [];
  const waiters: ((chunk: Uint8Array | null) => void)[] = [];
  const push = (chunk: Uint8Array | null) => {
    const w = waiters.shift();
    if (w) w(chunk);
    else queue.push(chunk);
  };
  socket.on("data", (d: Buffer) => push(new Uint8Array(d.buffer, d.byteOffset, d.length)));
  socket.on("end", () => push(null));
  socket.on("error", () => push(null));
  socket.on("close", () => push(null));
  return {
    remoteAddress: socket.remoteAddress ?? "",
    remotePort: socket.remotePort ?? 0,
    read: () => (queue.length > 0 ? Promise.resolve(queue.shift()!) : new Promise((resolve) => waiters.push(resolve))),
    write: (data) =>
      new Promise((resolve, reject) => {
        if (socket.destroyed) return reject(new Error("socket closed"));
        socket.write(data, (e) => (e ? reject(e) : resolve()));
      }),
    end: () => socket.end(),
    close: () => {
      if (socket.writableEnded) setTimeout(() => socket.destroy(), 50).unref();
      else socket.destroy();
    },
  };
}

/** Listens on 127.0.0.1 (ephemeral port unless given). */
export async function nodeListener(port = 0): Promise<StreamListener & { server: Server }> {
  const pending: ByteStream[] = [];
  const waiters: ((s: ByteStream | null) => void)[] = [];
  let closed = false;
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    const s = socketStream(socket);
    const w = waiters.shift();
    if (w) w(s);
    else pending.push(s);
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    server,
    port: (server.address() as { port: number }).port,
    accept: () => {
      if (pending.length > 0) return Promise.resolve(pending.shift()!);
      if (closed) return Promise.resolve(null);
      return new Promise((resolve) => waiters.push(resolve));
    },
    close: () => {
      closed = true;
      server.close();
      for (const w of waiters.splice(0)) w(null);
    },
  };
}
