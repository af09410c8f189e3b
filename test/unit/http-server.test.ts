// The guest's HTTP/1.1 server (kernel/net/http) on the host, over Node's TCP, against
// real clients: curl, and raw sockets sending what hostile clients send.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { connect } from "node:net";
import { after, before, describe, test } from "node:test";
import { HttpServer, type Handler } from "../../kernel/net/http/server.ts";
import { Response } from "../../kernel/web/response.ts";
import { ReadableStream } from "../../kernel/web/streams.ts";
import { nodeListener } from "../helpers/node-stream.ts";

let server: HttpServer;
let base: string;

const handler: Handler = async (req) => {
  const url = new URL(req.url);
  switch (url.pathname) {
    case "/hello":
      return new Response("hello\n", { headers: { "x-method": req.method } });
    case "/echo-sha256": {
      const body = await req.bytes();
      return new Response(`${body.length} ${createHash("sha256").update(body).digest("hex")}\n`);
    }
    case "/stream": {
      let i = 0;
      return new Response(new ReadableStream<Uint8Array>({
        pull(controller) {
          if (i === 100) return controller.close();
          controller.enqueue(new TextEncoder().encode(`line ${i++}\n`));
        },
      }));
    }
    case "/wrong-length":
      return new Response("twelve bytes", { headers: { "content-length": "3" } });
    case "/overlong-stream": {
      let sent = false;
      return new Response(new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent) return controller.close();
          sent = true;
          controller.enqueue(new TextEncoder().encode("0123456789"));
        },
      }), { headers: { "content-length": "4" } });
    }
    case "/huge": {
      const chunk = new Uint8Array(256 * 1024);
      let n = 0;
      return new Response(new ReadableStream<Uint8Array>({
        pull(controller) {
          if (n++ === 256) return controller.close();
          controller.enqueue(chunk);
        },
      }));
    }
    case "/throw":
      throw new Error("handler exploded");
    case "/slow":
      await new Promise((resolve) => setTimeout(resolve, 200));
      return new Response("slow\n");
    default:
      return new Response("not found\n", { status: 404 });
  }
};

before(async () => {
  const listener = await nodeListener();
  server = new HttpServer(listener, handler, { headersTimeoutMs: 300, idleTimeoutMs: 500, sendTimeoutMs: 500, maxBodyBytes: 4 * 1024 * 1024, maxConnections: 8 });
  base = `http://127.0.0.1:${listener.port}`;
});
after(() => server.close());

// The server runs in this process: clients must be spawned asynchronously.
function run(command: string, args: string[], input?: Buffer): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    child.stdout.setEncoding("latin1").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve({ stdout, stderr }) : reject(new Error(`${command} exited ${code}: ${stderr}`))));
    child.stdin.end(input);
  });
}

async function curl(...args: string[]): Promise<string> {
  return (await run("curl", ["-sS", "--max-time", "10", ...args])).stdout;
}

/** Sends raw bytes on a fresh connection and returns everything received until close. */
function raw(data: string | Buffer, { endAfterMs = 0, waitMs = 3000 } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const u = new URL(base);
    const socket = connect(Number(u.port), u.hostname);
    let out = "";
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => (out += d));
    socket.on("error", reject);
    socket.on("close", () => resolve(out));
    socket.write(data);
    if (endAfterMs) setTimeout(() => socket.end(), endAfterMs);
    setTimeout(() => socket.destroy(), waitMs);
  });
}

describe("HTTP server with real clients", () => {
  test("curl GET gets the body, Content-Length and a Date", async () => {
    const out = await curl("-i", `${base}/hello`);
    assert.match(out, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(out, /\r\ncontent-length: 6\r\n/i);
    assert.match(out, /\r\ndate: \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT\r\n/i);
    assert.match(out, /\r\n\r\nhello\n$/);
  });

  test("HEAD answers headers only, with the GET length", async () => {
    const out = await curl("-I", `${base}/hello`);
    assert.match(out, /content-length: 6/i);
    assert.doesNotMatch(out, /hello/);
  });

  test("keep-alive: curl reuses one connection for several requests", async () => {
    const { stdout, stderr } = await run("curl", ["-sv", `${base}/hello`, `${base}/hello`, `${base}/hello`]);
    assert.equal(stdout, "hello\nhello\nhello\n");
    assert.match(stderr, /Re-using existing connection|Reusing existing connection/);
  });

  test("pipelined requests are answered in order on one connection", async () => {
    const reqs = ["/slow", "/hello", "/nope"].map((p) => `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`).join("");
    const out = await raw(reqs + "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const statuses = [...out.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => m[1]);
    assert.deepEqual(statuses, ["200", "200", "404", "200"]);
    assert.ok(out.indexOf("slow\n") < out.indexOf("hello\n"), "responses out of order");
  });

  test("hundreds of keep-alive requests, each head split across two writes, are all answered promptly", async () => {
    // Regression: the head scanner kept an absolute offset across buffer compaction and
    // missed heads once ~4 KiB had gone through one connection (a 10 s stall every 60 requests).
    const u = new URL(base);
    const socket = connect(Number(u.port), u.hostname);
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    let received = "";
    socket.setEncoding("latin1");
    const waitFor = (n: number) => new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`response ${n} not received within 2 s`)), 2000);
      const check = () => {
        if ((received.match(/HTTP\/1\.1 200 /g) ?? []).length >= n) {
          clearTimeout(timer);
          socket.off("data", onData);
          resolve();
        }
      };
      const onData = (d: string) => {
        received += d;
        check();
      };
      socket.on("data", onData);
      check();
    });
    for (let i = 1; i <= 300; i++) {
      socket.write(`GET /hello?i=${i} HTTP/1.1\r\nHost: x\r\nUser-`);
      await new Promise((r) => setImmediate(r));
      socket.write("Agent: split\r\n\r\n");
      await waitFor(i);
    }
    socket.destroy();
  });

  test("a chunked upload of 3 MB arrives intact (with Expect: 100-continue)", async () => {
    const data = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 9)) & 255;
    const expected = `${data.length} ${createHash("sha256").update(data).digest("hex")}\n`;
    const { stdout: out } = await run("curl", ["-sS", "--max-time", "20", "-H", "Transfer-Encoding: chunked", "--data-binary", "@-", `${base}/echo-sha256`], data);
    assert.equal(out, expected);
  });

  test("a streamed response is sent chunked and arrives whole", async () => {
    const out = await curl("-i", `${base}/stream`);
    assert.match(out, /transfer-encoding: chunked/i);
    const body = out.slice(out.indexOf("\r\n\r\n") + 4);
    assert.equal(body, Array.from({ length: 100 }, (_, i) => `line ${i}\n`).join(""));
  });
});

describe("HTTP server against hostile input", () => {
  test("an oversized request line gets 414", async () => {
    const out = await raw(`GET /${"a".repeat(20000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.match(out, /^HTTP\/1\.1 414 /);
  });

  test("oversized headers get 431", async () => {
    const out = await raw(`GET / HTTP/1.1\r\nHost: x\r\n${"X-Junk: " + "b".repeat(1000) + "\r\n"}`.repeat(1) + "X-Big: " + "c".repeat(20000) + "\r\n\r\n");
    assert.match(out, /^HTTP\/1\.1 431 /);
  });

  test("a bad Content-Length gets 400", async () => {
    assert.match(await raw("POST /echo-sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n"), /^HTTP\/1\.1 400 /);
    assert.match(await raw("POST /echo-sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"), /^HTTP\/1\.1 400 /);
    assert.match(await raw("POST /echo-sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), /^HTTP\/1\.1 400 /);
  });

  test("garbage bytes get 400 and the connection is closed", async () => {
    const out = await raw(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 13, 10, 13, 10]));
    assert.match(out, /^HTTP\/1\.1 400 /);
    assert.match(out, /connection: close/i);
  });

  test("a body over the limit gets 413", async () => {
    assert.match(await raw(`POST /echo-sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: ${64 * 1024 * 1024}\r\n\r\n`), /^HTTP\/1\.1 413 /);
  });

  test("an unsupported HTTP version gets 505, a missing Host 400", async () => {
    assert.match(await raw("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), /^HTTP\/1\.1 505 /);
    assert.match(await raw("GET /hello HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 400 /);
  });

  test("a Host header that is not an authority gets 400 (it must not change the path)", async () => {
    assert.match(await raw("GET /hello HTTP/1.1\r\nHost: x/throw#\r\n\r\n"), /^HTTP\/1\.1 400 /);
    assert.match(await raw("GET /hello HTTP/1.1\r\nHost: user@x\r\n\r\n"), /^HTTP\/1\.1 400 /);
    assert.match(await raw("GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n"), /^HTTP\/1\.1 200 /);
  });

  test("a handler's wrong Content-Length never desynchronises the connection", async () => {
    // bytes body: the real length is sent; the next pipelined response parses cleanly
    const out = await raw("GET /wrong-length HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert.match(out, /content-length: 12\r\n(?:[^\r\n]+\r\n)*\r\ntwelve bytesHTTP\/1\.1 200 OK/i);
    // a stream longer than it declared: at most the declared bytes, then the connection closes
    const streamed = await raw("GET /overlong-stream HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.match(streamed, /content-length: 4\r\n/i);
    assert.doesNotMatch(streamed, /0123456789/);
    assert.equal([...streamed.matchAll(/^HTTP\/1\.1 /gm)].length, 1);
  });

  test("a client that stops reading loses its connection after the send timeout", async () => {
    const u = new URL(base);
    const socket = connect(Number(u.port), u.hostname);
    socket.on("error", () => undefined);
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    socket.pause(); // never read: the server's writes stall once the socket buffers fill
    socket.write("GET /huge HTTP/1.1\r\nHost: x\r\n\r\n");
    const closed = new Promise<number>((resolve) => {
      const started = Date.now();
      socket.once("close", () => resolve(Date.now() - started));
    });
    const before = server.stats.activeConnections;
    const deadline = Date.now() + 5000;
    while (server.stats.activeConnections >= before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(server.stats.activeConnections < before, "the stalled connection still holds its slot");
    socket.destroy();
    await closed;
  });

  test("a handler that throws gets 500", async () => {
    const out = await curl("-i", `${base}/throw`);
    assert.match(out, /^HTTP\/1\.1 500 /);
  });

  test("a half-sent head is answered 408 after the header timeout, and others are served meanwhile", async () => {
    const slowloris = raw("GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n", { waitMs: 3000 });
    assert.equal(await curl(`${base}/hello`), "hello\n");
    assert.match(await slowloris, /^HTTP\/1\.1 408 /);
  });

  test("connections past the limit get 503 while the others keep working", async () => {
    const u = new URL(base);
    const idle = await Promise.all(Array.from({ length: 8 }, () => new Promise<ReturnType<typeof connect>>((resolve) => {
      const s = connect(Number(u.port), u.hostname, () => resolve(s));
    })));
    await new Promise((r) => setTimeout(r, 50));
    const refused = await raw("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.match(refused, /^HTTP\/1\.1 503 /);
    for (const s of idle) s.destroy();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await curl(`${base}/hello`), "hello\n");
  });
});
