// The HTTP server's own cost per request, without the network: N keep-alive requests
// through an in-memory stream, in the guest (QuickJS). Prints microseconds per request.
import { args, Response } from "torito";
import { HttpServer } from "../../kernel/net/http/server.ts";
import type { ByteStream, StreamListener } from "../../kernel/net/stream.ts";

const N = Number(args[0] ?? 2000);
const request = new TextEncoder().encode("GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n");
const body = new Uint8Array(612).fill(120);
let sent = 0;
let responses = 0;
let done: () => void = () => undefined;
const finished = new Promise<void>((resolve) => (done = resolve));

const stream: ByteStream = {
  remoteAddress: "10.0.2.2",
  remotePort: 40000,
  // one request per read, like one TCP segment per request
  read: async () => (sent++ < N ? request : null),
  write: async () => {
    if (++responses === N) done();
  },
  end: () => undefined,
  close: () => undefined,
};
let accepted = false;
const listener: StreamListener = {
  port: 80,
  accept: async () => (accepted ? new Promise<ByteStream | null>(() => undefined) : ((accepted = true), stream)),
  close: () => undefined,
};
const handler = (req: Request) => {
  const url = new URL(req.url);
  return new Response(body, { headers: { "content-type": url.pathname.endsWith(".html") ? "text/html" : "text/plain" } });
};
const t0 = performance.now();
const server = new HttpServer(listener, handler as never);
await finished;
const us = ((performance.now() - t0) * 1000) / N;
console.log(JSON.stringify({ requests: N, usPerRequest: Math.round(us * 10) / 10 }));
server.close();
