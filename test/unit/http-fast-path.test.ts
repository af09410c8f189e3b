// The HTTP server's fast paths, byte for byte, over an in-memory ByteStream that offers
// everything the guest's TCP streams offer (readWith, cancelRead, tryWrite): responses of
// known length written with their head in one write, headers written from a Response's
// flat record, synchronous handlers, pipelining, and writes that must wait.
import assert from "node:assert/strict";
import { test } from "node:test";
import { HttpServer, type Handler } from "../../kernel/net/http/server.ts";
import type { ByteStream, StreamListener } from "../../kernel/net/stream.ts";
import { Headers } from "../../kernel/web/headers.ts";
import { Request } from "../../kernel/web/request.ts";
import { Response } from "../../kernel/web/response.ts";

/** One in-memory connection: the test pushes request bytes and reads what the server wrote. */
class MemoryStream implements ByteStream {
  readonly remoteAddress = "10.0.0.1";
  readonly remotePort = 4000;
  readonly writes: Uint8Array[] = [];
  ended = false;
  closed = false;
  /** Bytes tryWrite accepts at once (then the writes that wait complete on flush()). */
  room = Infinity;
  readonly #queue: (Uint8Array | null)[] = [];
  #pending: { ok: (c: Uint8Array | null) => void; fail: (e: unknown) => void } | null = null;
  readonly #waiting: (() => void)[] = [];

  push(data: string | null): void {
    const chunk = data === null ? null : new TextEncoder().encode(data);
    const p = this.#pending;
    if (p) {
      this.#pending = null;
      p.ok(chunk);
    } else this.#queue.push(chunk);
  }
  /** Puts bytes back in front of the queue. */
  unshift(chunk: Uint8Array): void {
    this.#queue.unshift(chunk);
  }
  readWith(ok: (c: Uint8Array | null) => void, fail: (e: unknown) => void): void {
    if (this.#queue.length > 0) ok(this.#queue.shift()!);
    else this.#pending = { ok, fail };
  }
  read(): Promise<Uint8Array | null> {
    return new Promise((ok, fail) => this.readWith(ok, fail));
  }
  cancelRead(error: unknown): void {
    const p = this.#pending;
    this.#pending = null;
    p?.fail(error);
  }
  tryWrite(data: Uint8Array): boolean {
    if (data.length > this.room) return false;
    this.room -= data.length;
    this.writes.push(data.slice());
    return true;
  }
  write(data: Uint8Array): Promise<void> {
    if (this.tryWrite(data)) return Promise.resolve();
    return new Promise((resolve) => this.#waiting.push(() => {
      this.writes.push(data.slice());
      resolve();
    }));
  }
  /** Lets the writes that wait complete. */
  flush(): void {
    this.room = Infinity;
    for (const w of this.#waiting.splice(0)) w();
  }
  end(): void { this.ended = true; }
  close(): void { this.closed = true; }
  text(): string {
    return this.writes.map((w) => new TextDecoder("latin1").decode(w)).join("").replace(/\r\ndate: [^\r]+/g, "\r\ndate: D");
  }
}

function listener(streams: MemoryStream[]): StreamListener {
  let next = 0;
  let wake: (() => void) | null = null;
  return {
    port: 80,
    accept: () => next < streams.length ? Promise.resolve(streams[next++]!) : new Promise((resolve) => { wake = () => resolve(null); }),
    close: () => wake?.(),
  };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

async function exchange(handler: Handler, requests: string[], setup?: (s: MemoryStream) => void): Promise<MemoryStream> {
  const stream = new MemoryStream();
  setup?.(stream);
  const server = new HttpServer(listener([stream]), handler);
  await tick();
  for (const r of requests) {
    stream.push(r);
    await tick();
  }
  server.close();
  return stream;
}

const GET = (path: string, extra = "") => `GET ${path} HTTP/1.1\r\nHost: example\r\n${extra}\r\n`;

test("a record of headers goes to the wire as given, with the body's real length, a Date, and the body in the same write", async () => {
  const body = new Uint8Array([60, 104, 49, 62, 0xff]);
  const s = await exchange(() => new Response(body, { headers: { "Content-Type": "text/html", ETag: '"1-2"', "content-length": "999" } }), [GET("/")]);
  assert.equal(s.writes.length, 1, "head and body in one write");
  assert.equal(s.text(), 'HTTP/1.1 200 OK\r\ncontent-type: text/html\r\netag: "1-2"\r\ncontent-length: 5\r\ndate: D\r\n\r\n<h1>\xff');
  assert.deepEqual(s.writes[0]!.subarray(-5), body);
});

test("a string body gets its default Content-Type and its UTF-8 length; HEAD gets the head only", async () => {
  const handler: Handler = () => new Response("héllo");
  const s = await exchange(handler, [GET("/"), "HEAD / HTTP/1.1\r\nHost: example\r\n\r\n"]);
  assert.equal(s.text(),
    "HTTP/1.1 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\ncontent-length: 6\r\ndate: D\r\n\r\nh\xc3\xa9llo" +
    "HTTP/1.1 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\ncontent-length: 6\r\ndate: D\r\n\r\n");
});

test("a handler's own Date and a HEAD answer's Content-Length are kept; 204/304 get no Content-Length", async () => {
  let n = 0;
  const handler: Handler = () => [
    new Response(null, { headers: { date: "Sun, 06 Nov 1994 08:49:37 GMT", "content-length": "42" } }),
    new Response(null, { status: 304, headers: { etag: '"x"' } }),
    new Response(null, { status: 204 }),
  ][n++]!;
  const s = await exchange(handler, [GET("/a"), GET("/b"), GET("/c")]);
  const raw = s.writes.map((w) => new TextDecoder().decode(w)).join("").replace(/date: (?!Sun, 06 Nov 1994)[^\r]+/g, "date: D");
  assert.equal(raw,
    "HTTP/1.1 200 OK\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\ncontent-length: 42\r\n\r\n" +
    "HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\ndate: D\r\n\r\n" +
    "HTTP/1.1 204 No Content\r\ndate: D\r\n\r\n");
});

test("headers changed through response.headers after construction are the ones written", async () => {
  const handler: Handler = () => {
    const r = new Response("x", { headers: { "x-a": "1", "x-b": "2" } });
    r.headers.delete("x-a");
    r.headers.append("x-b", "3");
    r.headers.set("set-cookie", "k=v");
    return r;
  };
  const s = await exchange(handler, [GET("/")]);
  assert.equal(s.text(), "HTTP/1.1 200 OK\r\nx-b: 2, 3\r\ncontent-type: text/plain;charset=UTF-8\r\nset-cookie: k=v\r\ncontent-length: 1\r\ndate: D\r\n\r\nx");
});

test("keys naming the same field are joined as a Headers joins them; Headers and pair lists still work", async () => {
  let n = 0;
  const handler: Handler = () => [
    new Response("", { headers: { "X-Twice": "a", "x-twice": "b" } }),
    new Response("", { headers: new Headers([["x-h", "1"]]) }),
    new Response("", { headers: [["x-p", "2"]] }),
  ][n++]!;
  const s = await exchange(handler, [GET("/1") + GET("/2") + GET("/3")]);
  assert.equal(s.text(),
    "HTTP/1.1 200 OK\r\nx-twice: a, b\r\ncontent-type: text/plain;charset=UTF-8\r\ncontent-length: 0\r\ndate: D\r\n\r\n" +
    "HTTP/1.1 200 OK\r\nx-h: 1\r\ncontent-type: text/plain;charset=UTF-8\r\ncontent-length: 0\r\ndate: D\r\n\r\n" +
    "HTTP/1.1 200 OK\r\nx-p: 2\r\ncontent-type: text/plain;charset=UTF-8\r\ncontent-length: 0\r\ndate: D\r\n\r\n");
});

test("invalid header names and values in a record still throw from the Response constructor", () => {
  assert.throws(() => new Response("", { headers: { "bad name": "x" } }), TypeError);
  assert.throws(() => new Response("", { headers: { ok: "a\r\nb" } }), TypeError);
});

test("pipelined requests to a synchronous handler are answered in order, the last with connection: close", async () => {
  const handler: Handler = (req: Request) => new Response(new URL(req.url).pathname);
  const s = await exchange(handler, [GET("/one") + GET("/two") + "GET /three HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n"]);
  const text = s.text();
  assert.deepEqual([...text.matchAll(/\r\n\r\n(\/[a-z]+)/g)].map((m) => m[1]), ["/one", "/two", "/three"]);
  assert.match(text, /connection: close\r\n\r\n\/three$/);
  assert.ok(s.ended && s.closed);
});

test("synchronous and promised answers, bodies and a head split over reads take turns on one connection; the request limit closes it", async () => {
  const handler: Handler = async (req: Request) => new Response(`${req.method} ${new URL(req.url).pathname} ${await req.text()}`);
  const sync: Handler = (req: Request) => req.method === "POST" ? handler(req, { remoteAddress: "", remotePort: 0 }) : new Response(new URL(req.url).pathname);
  const stream = new MemoryStream();
  const server = new HttpServer(listener([stream]), sync, { maxRequestsPerConnection: 4 });
  await tick();
  stream.push(GET("/a") + "POST /b HTTP/1.1\r\nHost: example\r\nContent-Length: 5\r\n\r\nhe");
  await tick();
  stream.push("llo" + GET("/c").slice(0, 7));
  await tick();
  stream.push(GET("/c").slice(7) + GET("/d") + GET("/e"));
  await tick();
  const bodies = [...stream.text().matchAll(/\r\n\r\n([^H]*)/g)].map((m) => m[1]);
  assert.deepEqual(bodies, ["/a", "POST /b hello", "/c", "/d"]);
  assert.match(stream.text(), /connection: close\r\n\r\n\/d$/);
  assert.ok(stream.ended && stream.closed);
  assert.equal(server.stats.activeConnections, 0);
  server.close();
});

test("a connection closed in the middle of a head gets 400; one closed between requests none", async () => {
  const cut = new MemoryStream(), clean = new MemoryStream();
  const server = new HttpServer(listener([cut, clean]), () => new Response("x"));
  await tick();
  cut.push(GET("/") + "GET / HT");
  cut.push(null);
  clean.push(GET("/"));
  clean.push(null);
  await tick();
  assert.match(cut.text(), /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nxHTTP\/1\.1 400 /);
  assert.match(clean.text(), /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nx$/);
  assert.ok(cut.closed && clean.closed && clean.ended);
  assert.equal(server.stats.activeConnections, 0);
  server.close();
});

test("a response that does not fit the send buffer waits, and the connection goes on afterwards", async () => {
  const big = "y".repeat(3000);
  const stream = new MemoryStream();
  stream.room = 100;
  const server = new HttpServer(listener([stream]), async () => new Response(big));
  await tick();
  stream.push(GET("/"));
  await tick();
  assert.equal(stream.writes.length, 0, "nothing fits yet");
  stream.flush();
  await tick();
  stream.push(GET("/again"));
  await tick();
  server.close();
  assert.equal(stream.text().split(big).length, 3, "both responses whole");
});

test("an idle connection times out through cancelRead and is closed without a response", async () => {
  const stream = new MemoryStream();
  const server = new HttpServer(listener([stream]), () => new Response("x"), { idleTimeoutMs: 50 });
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.ok(stream.closed);
  assert.equal(stream.writes.length, 0);
  server.close();
});

test("a half-sent head gets 408 after the header timeout", async () => {
  const stream = new MemoryStream();
  const server = new HttpServer(listener([stream]), () => new Response("x"), { headersTimeoutMs: 50 });
  await tick();
  stream.push("GET / HTTP/1.1\r\nHo");
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.match(stream.text(), /^HTTP\/1\.1 408 /);
  assert.ok(stream.closed);
  server.close();
});

test("a frozen record is validated once and shared, never modified; its heads follow status, length and connection", async () => {
  const record = Object.freeze({ "Content-Type": "text/html", ETag: '"1"' });
  const a = new Response(new Uint8Array(2), { headers: record });
  assert.equal(Response.flatHeaders(new Response(null, { headers: record })), Response.flatHeaders(a), "one list for both");
  const text = new Response("hé", { headers: Object.freeze({ etag: '"2"' }) });
  assert.deepEqual(Response.flatHeaders(text), ["etag", '"2"', "content-type", "text/plain;charset=UTF-8"]);
  assert.deepEqual(Response.flatHeaders(new Response(null, { headers: Object.freeze({ etag: '"2"' }) })), ["etag", '"2"']);
  a.headers.set("x-later", "1");
  assert.deepEqual(Response.flatHeaders(new Response(null, { headers: record })), ["content-type", "text/html", "etag", '"1"']);
  assert.throws(() => new Response(null, { headers: Object.freeze({ "bad name": "1" }) }), TypeError);

  const bodies = [new Uint8Array(2), new Uint8Array(2), new Uint8Array(3), new Uint8Array(3)];
  const statuses = [200, 200, 200, 203];
  let n = 0;
  const s = await exchange(() => new Response(bodies[n], { status: statuses[n++], headers: record }),
    [GET("/"), GET("/"), GET("/"), GET("/", "Connection: close\r\n")]);
  const head = (status: string, length: number, close = "") => `HTTP/1.1 ${status}\r\ncontent-type: text/html\r\netag: "1"\r\ncontent-length: ${length}\r\ndate: D\r\n${close}\r\n`;
  assert.equal(s.text(),
    head("200 OK", 2) + "\0\0" + head("200 OK", 2) + "\0\0" + head("200 OK", 3) + "\0\0\0" +
    head("203 ", 3, "connection: close\r\n") + "\0\0\0");
});

test("Response.headers is a Headers made from the record on first use", () => {
  const r = new Response(new Uint8Array(1), { headers: { "X-One": "1", accept: " a " } });
  assert.ok(r.headers instanceof Headers);
  assert.equal(r.headers, r.headers);
  assert.deepEqual([...r.headers], [["accept", "a"], ["x-one", "1"]]);
  assert.equal(Response.flatHeaders(r), null);
  assert.deepEqual(Response.flatHeaders(new Response(null, { headers: { A: "1" } })), ["a", "1"]);
});

/** A MemoryStream that also reads into the server's buffer (readIntoWith), as the guest's TCP streams do. */
class IntoStream extends MemoryStream {
  readIntoWith(target: Uint8Array, offset: number, onRead: (count: number) => void, onError: (e: unknown) => void): void {
    this.readWith((chunk) => {
      if (chunk === null) return onRead(0);
      const n = Math.min(chunk.length, target.length - offset);
      target.set(chunk.subarray(0, n), offset);
      if (n < chunk.length) this.unshift(chunk.subarray(n)); // what did not fit stays for the next read
      onRead(n);
    }, onError);
  }
}

test("over a stream that reads into the server's buffer: pipelined and split heads, a head larger than the buffer, a body, then EOF", async () => {
  const handler: Handler = async (req: Request) => new Response(`${new URL(req.url).pathname} ${req.headers.get("x-big")?.length ?? 0} ${await req.text()}`);
  const stream = new IntoStream();
  const server = new HttpServer(listener([stream]), handler);
  await tick();
  const big = GET("/big", `X-Big: ${"b".repeat(6000)}\r\n`);
  stream.push(GET("/a") + GET("/b").slice(0, 9));
  await tick();
  stream.push(GET("/b").slice(9) + big.slice(0, 3000));
  await tick();
  stream.push(big.slice(3000) + "POST /p HTTP/1.1\r\nHost: example\r\nContent-Length: 5\r\n\r\nhello" + GET("/c"));
  await tick();
  stream.push(null);
  await tick();
  const bodies = [...stream.text().matchAll(/\r\n\r\n([^H]*)/g)].map((m) => m[1]);
  assert.deepEqual(bodies, ["/a 0 ", "/b 0 ", "/big 6000 ", "/p 0 hello", "/c 0 "]);
  assert.ok(stream.closed);
  assert.equal(server.stats.activeConnections, 0);
  server.close();
});

test("Headers lookups are case-insensitive, also when a name's lower-case form is remembered", () => {
  const h = new Headers({ "If-None-Match": "\"a\"", "x-Mixed": "1" });
  for (let i = 0; i < 3; i++) {
    assert.equal(h.get("if-none-match"), "\"a\"");
    assert.equal(h.get("IF-NONE-MATCH"), "\"a\"");
    assert.equal(h.get("If-None-Match"), "\"a\"");
    assert.ok(h.has("X-MIXED") && h.has("x-mixed"));
    assert.equal(h.get("range"), null);
    assert.equal(h.has("Range"), false);
    assert.equal(h.get("not a name"), null); // looked up, never valid for append
  }
  assert.throws(() => h.append("not a name", "x"), TypeError);
});

test("the native parser's answer fills a connection's head record in place, or a new one", async () => {
  const { fromNative, HttpError } = await import("../../kernel/net/http/wire.ts");
  const into = { method: "", target: "", minorVersion: 1, headers: new Headers(), length: 0 };
  const first = fromNative(["GET", "/a", 1, "host", "x", "accept", "*/*"], 40, into);
  assert.equal(first, into);
  assert.deepEqual([first.method, first.target, first.minorVersion, first.length], ["GET", "/a", 1, 40]);
  const firstHeaders = first.headers;
  assert.equal(firstHeaders.get("host"), "x");
  const second = fromNative(["HEAD", "/b", 0, "host", "y"], 30, into);
  assert.equal(second, into);
  assert.deepEqual([second.method, second.target, second.minorVersion, second.length], ["HEAD", "/b", 0, 30]);
  // each request still gets Headers of its own: the first request's are untouched
  assert.notEqual(second.headers, firstHeaders);
  assert.equal(firstHeaders.get("host"), "x");
  assert.equal(firstHeaders.get("accept"), "*/*");
  assert.equal(second.headers.get("accept"), null);
  const fresh = fromNative(["GET", "/c", 1], 20);
  assert.notEqual(fresh, into);
  assert.equal(fresh.target, "/c");
  // a repeated name keeps its values in order, joined by get() (set-cookie kept apart)
  const repeated = fromNative(["GET", "/d", 1, "accept", "a", "set-cookie", "x=1", "host", "h", "accept", "b", "set-cookie", "y=2"], 50).headers;
  assert.equal(repeated.get("accept"), "a, b");
  assert.deepEqual(repeated.getSetCookie(), ["x=1", "y=2"]);
  assert.deepEqual([...repeated.keys()], ["accept", "host", "set-cookie", "set-cookie"]);
  assert.equal(repeated.get("host"), "h");
  assert.throws(() => fromNative(-4, 10, into), (e) => e instanceof HttpError && e.status === 400 && e.message === "malformed method");
});

test("request URLs follow each request's Host and target, also when one repeats the last", async () => {
  const handler: Handler = (req: Request) => new Response(req.url);
  const s = await exchange(handler, [
    GET("/a") + GET("/a") + "GET /a HTTP/1.1\r\nHost: other:8080\r\n\r\n" + GET("/a") + GET("/b") +
      "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + "GET http://abs.example/x HTTP/1.1\r\nHost: abs.example\r\nConnection: close\r\n\r\n",
  ]);
  assert.deepEqual([...s.text().matchAll(/\r\n\r\n(http:\/\/[^H]*?)(?=HTTP\/|$)/g)].map((m) => m[1]), [
    "http://example/a", "http://example/a", "http://other:8080/a", "http://example/a", "http://example/b",
    "http://localhost/a", "http://abs.example/x",
  ]);
});
