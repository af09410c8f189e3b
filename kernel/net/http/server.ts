/**
 * The HTTP/1.1 server (RFC 9110, RFC 9112) behind `serve()`: persistent connections,
 * pipelining (requests are answered in order), chunked bodies both ways, streaming
 * request and response bodies, and explicit limits, each violation answered with its
 * status before the connection is closed:
 *   400 malformed request, 408 head or body not received in time (slowloris),
 *   413 body too large, 414 request line too long, 431 head too large,
 *   500 handler threw, 501/505 unsupported coding/version, 503 too many connections.
 * Every other connection keeps being served.
 */
import { TextEncoder } from "../../encoding.ts";
import { Body, concatChunks } from "../../web/body.ts";
import { Headers } from "../../web/headers.ts";
import { Request } from "../../web/request.ts";
import { Response, STATUS_TEXT } from "../../web/response.ts";
import { ReadableStream } from "../../web/streams.ts";
import type { ByteStream, StreamListener } from "../stream.ts";
import { findHeadEnd, httpDate, HttpError, NO_FRAMING, parseRequestHead, requestFraming, type BodyFraming, type RequestHead } from "./wire.ts";

export type Handler = (request: Request, info: { remoteAddress: string; remotePort: number }) => Response | Promise<Response>;

/** Limits and timeouts of one server; every field has a default. */
export interface ServerLimits {
  maxRequestLineBytes: number;
  maxHeaderBytes: number;
  maxHeaderCount: number;
  maxBodyBytes: number;
  maxConnections: number;
  /** the whole head must arrive within this long after its first byte (slowloris) */
  headersTimeoutMs: number;
  /** a persistent connection with no request in progress is closed after this long */
  idleTimeoutMs: number;
  /** each read of the request body must make progress within this long */
  bodyTimeoutMs: number;
  /** a response write that makes no progress for this long closes the connection */
  sendTimeoutMs: number;
  /** requests served on one connection before it is closed */
  maxRequestsPerConnection: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxRequestLineBytes: 8 * 1024,
  maxHeaderBytes: 16 * 1024,
  maxHeaderCount: 100,
  maxBodyBytes: 16 * 1024 * 1024,
  maxConnections: 256,
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 5_000,
  bodyTimeoutMs: 10_000,
  sendTimeoutMs: 30_000,
  maxRequestsPerConnection: 10_000,
};

/** Counters for tests and diagnostics. */
export interface ServerStats {
  connections: number;
  activeConnections: number;
  requests: number;
  rejected: Record<number, number>;
  handlerErrors: number;
}

const encoder = new TextEncoder();
/** How often read deadlines are checked: the precision of every timeout above. */
const SWEEP_MS = 100;

class Timeout extends Error {}

/** An empty array (never written to). */
const NO_BYTES = new Uint8Array(0);

/** A request field's value as Headers.get() reads it (a repeated field joined). */
function fieldText(field: string | readonly string[]): string {
  return typeof field === "string" ? field : field.join(", ");
}
/** What a write that completed at once returns. */
const WRITTEN: Promise<void> = Promise.resolve();
/** What #exchange returns when the handler answered with a promise (in reader.pending). */
const PENDING = 2;
/** then() callback of a failed exchange: the connection closes. */
const CLOSE = (): false => false;

/** Buffered reading from a ByteStream with deadlines. */
class Reader {
  buf = new Uint8Array(4096);
  start = 0;
  end = 0;
  eof = false;
  /** The handler's answer still to come (and what goes with it), while #exchange returns PENDING. */
  pendingResult: Promise<Response> | null = null;
  pendingKeepAlive = false;
  pendingBody: BodyReader | null = null;
  /** While a head is being read: bytes after start known not to complete it. */
  scanned = 0;
  /** While a head is being read: when it must be complete (Date.now() clock), 0 before its first byte. */
  headDeadline = 0;
  /**
   * The record the native head parser fills for this connection's requests, one at a time
   * (the next head is parsed only once the previous exchange is over): no record per request.
   */
  readonly head: RequestHead = { method: "", target: "", minorVersion: 1, headers: new Headers(), length: 0 };

  /** When the pending read times out (Date.now() clock), or Infinity when none is pending. */
  deadline = Infinity;
  #rejectWait: ((e: unknown) => void) | null = null;
  /** A read through stream.cancelRead()-able stream is pending. */
  #cancellable = false;
  readonly #onReadError = (e: unknown): never => {
    this.deadline = Infinity;
    this.#cancellable = false;
    throw e;
  };
  readonly #onChunk = (chunk: Uint8Array | null): boolean => {
    this.deadline = Infinity;
    this.#rejectWait = null;
    this.#cancellable = false;
    if (chunk === null) {
      this.eof = true;
      return false;
    }
    this.append(chunk);
    return true;
  };

  #resolveRead: ((more: boolean) => void) | null = null;
  #rejectRead: ((e: unknown) => void) | null = null;
  readonly #startRead = (resolve: (more: boolean) => void, reject: (e: unknown) => void): void => {
    this.#resolveRead = resolve;
    this.#rejectRead = reject;
    this.stream.readWith!(this.#chunkRead, this.#failRead);
  };
  readonly #chunkRead = (chunk: Uint8Array | null): void => {
    const resolve = this.#resolveRead!;
    this.#resolveRead = this.#rejectRead = null;
    resolve(this.#onChunk(chunk));
  };
  readonly #failRead = (e: unknown): void => {
    const reject = this.#rejectRead!;
    this.#resolveRead = this.#rejectRead = null;
    this.deadline = Infinity;
    this.#cancellable = false;
    reject(e);
  };

  #thenRead: (() => void) | null = null;
  #thenFail: ((e: unknown) => void) | null = null;
  readonly #chunkThen = (chunk: Uint8Array | null): void => {
    const done = this.#thenRead!;
    this.#thenRead = this.#thenFail = null;
    this.#onChunk(chunk);
    done();
  };
  readonly #countThen = (count: number): void => {
    const done = this.#thenRead!;
    this.#thenRead = this.#thenFail = null;
    this.deadline = Infinity;
    this.#cancellable = false;
    // the stream copied the bytes to buf[end…] itself (readIntoWith)
    if (count === 0) this.eof = true;
    else this.end += count;
    done();
  };
  readonly #failThen = (e: unknown): void => {
    const fail = this.#thenFail!;
    this.#thenRead = this.#thenFail = null;
    this.deadline = Infinity;
    this.#cancellable = false;
    fail(e);
  };

  constructor(private readonly stream: ByteStream) {}

  get available(): number {
    return this.end - this.start;
  }

  /**
   * Reads more bytes; false at EOF. Rejects with Timeout once `timeoutMs` pass: the
   * server's sweep (one timer for all connections, not one per read) calls expire().
   */
  fill(timeoutMs: number): Promise<boolean> {
    if (this.eof) return Promise.resolve(false);
    this.deadline = Date.now() + timeoutMs;
    if (this.stream.readWith !== undefined && this.stream.cancelRead !== undefined) {
      // one promise per read, ours: the stream calls back instead of settling one of its own
      this.#cancellable = true;
      return new Promise<boolean>(this.#startRead);
    }
    if (this.stream.cancelRead !== undefined) {
      // expire() cancels the read itself: no promise of our own around it
      this.#cancellable = true;
      return this.stream.read().then(this.#onChunk, this.#onReadError);
    }
    return new Promise<boolean>((resolve, reject) => {
      this.#rejectWait = reject;
      this.stream.read().then((chunk) => {
        if (this.#rejectWait === reject) resolve(this.#onChunk(chunk));
      }, (e: unknown) => {
        this.deadline = Infinity;
        this.#rejectWait = null;
        reject(e);
      });
    });
  }

  /**
   * fill() with callbacks: `onRead` once more bytes (or EOF: `eof`) are in, `onError` on a
   * failure or Timeout; at once when the stream can answer at once. Without a promise when
   * the stream reads by callback and can cancel a read.
   */
  fillThen(timeoutMs: number, onRead: () => void, onError: (e: unknown) => void): void {
    const stream = this.stream;
    if (this.eof || stream.readWith === undefined || stream.cancelRead === undefined) {
      this.fill(timeoutMs).then(onRead, onError);
      return;
    }
    this.deadline = Date.now() + timeoutMs;
    this.#cancellable = true;
    this.#thenRead = onRead;
    this.#thenFail = onError;
    if (stream.readIntoWith === undefined) {
      stream.readWith(this.#chunkThen, this.#failThen);
      return;
    }
    // straight into buf, without a chunk of the stream's: room after end first
    if (this.start === this.end) this.start = this.end = 0;
    else if (this.end === this.buf.length) this.#makeRoom();
    stream.readIntoWith(this.buf, this.end, this.#countThen, this.#failThen);
  }

  /** Frees space after end: moves the live bytes to the front, or a buffer twice as large when they fill it. */
  #makeRoom(): void {
    const live = this.end - this.start;
    if (this.start > 0) {
      this.buf.copyWithin(0, this.start, this.end);
    } else {
      const next = new Uint8Array(this.buf.length * 2);
      next.set(this.buf, 0);
      this.buf = next;
    }
    this.start = 0;
    this.end = live;
  }

  /** When the pending write times out, or Infinity. */
  writeDeadline = Infinity;
  #rejectWrite: ((e: unknown) => void) | null = null;

  /**
   * The connection with deadlines on writes too: a client that stops reading (a zero
   * window forever) must not hold its connection slot, so a write that makes no progress
   * for `sendTimeoutMs` fails and the connection is closed.
   */
  guarded(sendTimeoutMs: number): ByteStream {
    const stream = this.stream;
    return {
      remoteAddress: stream.remoteAddress,
      remotePort: stream.remotePort,
      read: () => stream.read(),
      // without a deadline: it never waits
      tryWrite: stream.tryWrite?.bind(stream),
      end: () => stream.end(),
      close: () => stream.close(),
      write: (data) => {
        // fits the send buffer now: nothing to wait for, so no deadline and no promise of ours
        if (stream.tryWrite !== undefined && stream.tryWrite(data)) return WRITTEN;
        this.writeDeadline = Date.now() + sendTimeoutMs;
        return new Promise<void>((resolve, reject) => {
          this.#rejectWrite = reject;
          stream.write(data).then(() => {
            if (this.#rejectWrite !== reject) return;
            this.#rejectWrite = null;
            this.writeDeadline = Infinity;
            resolve();
          }, (e: unknown) => {
            this.#rejectWrite = null;
            this.writeDeadline = Infinity;
            reject(e);
          });
        });
      },
    };
  }

  /** Fails the pending read or write with Timeout if its deadline has passed. */
  expire(now: number): void {
    if (now >= this.writeDeadline && this.#rejectWrite !== null) {
      const reject = this.#rejectWrite;
      this.#rejectWrite = null;
      this.writeDeadline = Infinity;
      reject(new Timeout());
      this.stream.close();
    }
    if (now < this.deadline) return;
    if (this.#cancellable) {
      this.#cancellable = false;
      this.deadline = Infinity;
      this.stream.cancelRead!(new Timeout());
      return;
    }
    if (this.#rejectWait === null) return;
    const reject = this.#rejectWait;
    this.#rejectWait = null;
    this.deadline = Infinity;
    reject(new Timeout());
  }

  append(chunk: Uint8Array): void {
    if (this.end + chunk.length > this.buf.length) {
      const live = this.end - this.start;
      if (live + chunk.length <= this.buf.length) {
        this.buf.copyWithin(0, this.start, this.end);
      } else {
        const next = new Uint8Array(Math.max(live + chunk.length, this.buf.length * 2));
        next.set(this.buf.subarray(this.start, this.end), 0);
        this.buf = next;
      }
      this.start = 0;
      this.end = live;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }

  /** Takes up to n buffered bytes (a copy the caller owns). */
  take(n: number): Uint8Array {
    const k = Math.min(n, this.available);
    const out = this.buf.slice(this.start, this.start + k);
    this.start += k;
    return out;
  }
}

/** A connection being served: its state between the steps of HttpServer.#run. */
interface Connection {
  readonly raw: ByteStream;
  readonly reader: Reader;
  /** raw with deadlines on writes (Reader.guarded) */
  readonly stream: ByteStream;
  readonly info: { remoteAddress: string; remotePort: number };
  /** requests begun */
  served: number;
  /** #run is on the stack: a read answered at once is taken up by its loop, not by a call of its own */
  running: boolean;
  /** a read was answered while #run was on the stack */
  answered: boolean;
  /** why the last read failed (Timeout or the stream's error), until #run has dealt with it */
  readError: unknown;
  finished: boolean;
  /** the callbacks of the connection's head reads (Reader.fillThen) */
  readonly onRead: () => void;
  readonly onReadError: (e: unknown) => void;
}

export class HttpServer {
  readonly limits: ServerLimits;
  readonly stats: ServerStats = { connections: 0, activeConnections: 0, requests: 0, rejected: {}, handlerErrors: 0 };
  #closed = false;
  /** The Date header's text for the second [from, until) of the clock. */
  #dateCache = { from: 0, until: 0, text: "" };
  #lastGoodHost: string | null = null;
  /** The last request URL made from a Host and an origin-form target, which clients repeat. */
  #lastUrl = { host: "", target: "", url: "" };
  /** The last response head written from #writeResponse's fast path, and its bytes (never modified). */
  #lastHeadText = "";
  #lastHeadBytes: Uint8Array = NO_BYTES;
  /**
   * The head + body array of the last response that went out through tryWrite (which copies
   * it), to be filled again for a response of the same length, and the head bytes it holds.
   */
  #out: Uint8Array = NO_BYTES;
  #outHead: Uint8Array | null = null;
  /**
   * What the last head from #writeResponse was made of: the same flat header list (a frozen
   * record's, shared by its responses) with the same status, length, connection and date
   * gives the same bytes, without building the text again.
   */
  #lastHeadFrom = { flat: null as readonly string[] | null, status: 0, statusText: "", minor: 0, keepAlive: false, length: 0, date: "" };
  #streams = new Set<ByteStream>();
  #readers = new Set<Reader>();
  #sweep: ReturnType<typeof setInterval> | null = null;
  readonly finished: Promise<void>;

  constructor(private readonly listener: StreamListener, private readonly handler: Handler, limits: Partial<ServerLimits> = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.finished = this.#acceptLoop();
  }

  get port(): number {
    return this.listener.port;
  }

  /** Stops accepting and closes every connection. */
  close(): void {
    this.#closed = true;
    this.listener.close();
    for (const s of this.#streams) s.close();
  }

  async #acceptLoop(): Promise<void> {
    for (;;) {
      const stream = await this.listener.accept();
      if (!stream || this.#closed) {
        stream?.close();
        return;
      }
      this.stats.connections++;
      if (this.stats.activeConnections >= this.limits.maxConnections) {
        void this.#refuse(stream);
        continue;
      }
      this.stats.activeConnections++;
      this.#streams.add(stream);
      this.#serveConnection(stream);
    }
  }

  async #refuse(stream: ByteStream): Promise<void> {
    this.#count(503);
    try {
      await stream.write(this.#errorResponse(503, "too many connections", 1));
      stream.end();
    } catch {
      // the peer went away: nothing to tell it
    }
    stream.close();
  }

  #count(status: number): void {
    this.stats.rejected[status] = (this.stats.rejected[status] ?? 0) + 1;
  }

  #date(): string {
    const now = Date.now();
    let cache = this.#dateCache;
    // (comparisons only while the second lasts: no Math.floor per request)
    if (now >= cache.until || now < cache.from) {
      const from = now - (now % 1000);
      cache = this.#dateCache = { from, until: from + 1000, text: httpDate(now) };
    }
    return cache.text;
  }

  #errorResponse(status: number, message: string, minorVersion: number): Uint8Array {
    const body = `${status} ${STATUS_TEXT[status] ?? ""}: ${message}\n`;
    return encoder.encode(
      `HTTP/1.${minorVersion} ${status} ${STATUS_TEXT[status] ?? ""}\r\ndate: ${this.#date()}\r\n` +
        `content-type: text/plain;charset=UTF-8\r\ncontent-length: ${encoder.encode(body).length}\r\nconnection: close\r\n\r\n${body}`,
    );
  }

  /** One timer for every connection's read deadline, running while there are connections. */
  #track(reader: Reader): void {
    this.#readers.add(reader);
    if (this.#sweep === null) {
      this.#sweep = setInterval(() => {
        const now = Date.now();
        for (const r of this.#readers) r.expire(now);
      }, SWEEP_MS);
      this.#sweep.unref();
    }
  }

  #untrack(reader: Reader): void {
    this.#readers.delete(reader);
    if (this.#readers.size === 0 && this.#sweep !== null) {
      clearInterval(this.#sweep);
      this.#sweep = null;
    }
  }

  #serveConnection(raw: ByteStream): void {
    const reader = new Reader(raw);
    const stream = reader.guarded(this.limits.sendTimeoutMs);
    this.#track(reader);
    const c: Connection = {
      raw, reader, stream, info: { remoteAddress: stream.remoteAddress, remotePort: stream.remotePort },
      served: 0, running: false, answered: false, readError: null, finished: false,
      onRead: () => {
        if (c.running) c.answered = true;
        else this.#run(c);
      },
      onReadError: (e: unknown) => {
        c.readError = e;
        if (c.running) c.answered = true;
        else this.#run(c);
      },
    };
    this.#run(c);
  }

  /**
   * Serves the connection's requests for as long as each can be answered at once: a head
   * buffered, a handler that returns a Response, a write that fits. Bytes are waited for by
   * a callback from the stream (no promise, no async frame per request); whatever else
   * waits — a handler's promise, a request body, a write under back-pressure, an error
   * response — continues in #serveAsync, which comes back here.
   */
  #run(c: Connection): void {
    const reader = c.reader, limits = this.limits;
    c.running = true;
    try {
      for (;;) {
        if (c.served >= limits.maxRequestsPerConnection || this.#closed) return this.#finish(c, true);
        let head: RequestHead | undefined;
        try {
          if (c.readError !== null) {
            const e = c.readError;
            c.readError = null;
            if (e instanceof Timeout && reader.headDeadline === 0) return this.#finish(c, true); // idle keep-alive connection
            throw e;
          }
          head = this.#scanHead(reader);
          if (head === undefined) {
            if (reader.eof) {
              if (reader.available > 0) throw new HttpError(400, "connection closed in the middle of a request head");
              return this.#finish(c, true); // clean close between requests
            }
            const waitMs = reader.headDeadline === 0 ? limits.idleTimeoutMs : reader.headDeadline - Date.now();
            if (waitMs <= 0) throw new Timeout();
            c.answered = false;
            reader.fillThen(waitMs, c.onRead, c.onReadError);
            if (!c.answered) return; // the stream calls back later
            continue;
          }
        } catch (e) {
          void this.#fail(c.stream, e, 1).then(() => this.#finish(c, true));
          return;
        }
        // the next head starts with nothing scanned and no deadline
        reader.scanned = 0;
        reader.headDeadline = 0;
        // synchronous when the handler's response was written at once
        const keepAlive = this.#exchange(c.stream, reader, head, c.info, ++c.served === limits.maxRequestsPerConnection);
        if (keepAlive === false) return this.#finish(c, true);
        if (keepAlive !== true) {
          void this.#serveAsync(c, head, keepAlive);
          return;
        }
      }
    } catch {
      this.#finish(c, false); // connection reset or write failure: drop it
    } finally {
      c.running = false;
    }
  }

  /** The rest of an exchange that waits (see #run); then the connection's next request. */
  async #serveAsync(c: Connection, head: RequestHead, exchanged: Promise<boolean> | typeof PENDING): Promise<void> {
    try {
      let keepAlive: boolean | Promise<boolean> | typeof PENDING = exchanged;
      if (keepAlive === PENDING) {
        // the handler's promise, awaited here rather than in a function of its own
        const reader = c.reader;
        const result = reader.pendingResult!, pendingKeepAlive = reader.pendingKeepAlive, body = reader.pendingBody!;
        reader.pendingResult = reader.pendingBody = null;
        let response: Response | null = null;
        try {
          response = await result;
          if (!(response instanceof Response)) throw new TypeError("the handler did not return a Response");
        } catch (e) {
          response = null;
          keepAlive = this.#handlerFailed(c.stream, e, head, body);
        }
        if (response !== null) keepAlive = this.#respond(c.stream, response, head, pendingKeepAlive, body);
      }
      if (keepAlive !== true && keepAlive !== false) keepAlive = await keepAlive;
      if (!keepAlive) {
        this.#finish(c, true);
        return;
      }
    } catch {
      this.#finish(c, false); // connection reset or write failure: drop it
      return;
    }
    this.#run(c);
  }

  /** Closes the connection (ending it first when `clean`) and forgets it; once. */
  #finish(c: Connection, clean: boolean): void {
    if (c.finished) return;
    c.finished = true;
    try {
      if (clean) c.stream.end();
    } catch {
      // gone
    }
    this.#untrack(c.reader);
    c.stream.close();
    this.stats.activeConnections--;
    this.#streams.delete(c.raw);
  }

  async #fail(stream: ByteStream, e: unknown, minorVersion: number): Promise<void> {
    const status = e instanceof HttpError ? e.status : e instanceof Timeout ? 408 : 400;
    const message = e instanceof HttpError ? e.message : e instanceof Timeout ? "request not received in time" : "bad request";
    this.#count(status);
    try {
      await stream.write(this.#errorResponse(status, message, minorVersion));
    } catch {
      // gone
    }
  }

  /** 414 as soon as the request line is known to be longer than the limit. */
  #checkRequestLine(reader: Reader): void {
    const max = this.limits.maxRequestLineBytes;
    const window = reader.buf.subarray(reader.start, Math.min(reader.end, reader.start + max + 2));
    const lf = window.indexOf(10);
    if ((lf < 0 && window.length > max) || lf > max) throw new HttpError(414, "request line too long");
  }

  /**
   * The next request head if all of it is buffered, undefined if more bytes are needed
   * (reader.scanned and reader.headDeadline carry the progress); throws HttpError.
   */
  #scanHead(reader: Reader): RequestHead | undefined {
    const limits = this.limits;
    const buf = reader.buf;
    // skip empty lines between pipelined requests (RFC 9112 §2.2)
    while (reader.start < reader.end && (buf[reader.start] === 13 || buf[reader.start] === 10)) {
      reader.start++;
      reader.scanned = 0;
    }
    if (reader.start === reader.end) return undefined;
    // Bytes after reader.start already known not to complete the head. Relative to start,
    // because Reader.append() may move the live bytes to the front of its buffer.
    const end = findHeadEnd(buf, reader.start + (reader.scanned > 3 ? reader.scanned - 3 : 0), reader.end);
    if (end >= 0) {
      // (a whole head no longer than the request line limit cannot hold a line above it)
      if (end - reader.start > limits.maxRequestLineBytes) this.#checkRequestLine(reader);
      if (end - reader.start > limits.maxHeaderBytes) throw new HttpError(431, "request head too large");
      const head = parseRequestHead(buf, reader.start, end, limits, reader.head);
      reader.start = end;
      return head;
    }
    reader.scanned = reader.available;
    this.#checkRequestLine(reader);
    if (reader.available > limits.maxHeaderBytes) throw new HttpError(431, "request head too large");
    if (reader.headDeadline === 0) reader.headDeadline = Date.now() + limits.headersTimeoutMs;
    return undefined;
  }

  /**
   * Serves one request; returns whether the connection stays open — synchronously when the
   * handler returned a Response (not a promise) and it was written at once.
   */
  #exchange(stream: ByteStream, reader: Reader, head: RequestHead, info: { remoteAddress: string; remotePort: number }, last: boolean): boolean | Promise<boolean> | typeof PENDING {
    const minor = head.minorVersion;
    const headers = head.headers;
    let framing: BodyFraming;
    // The server's lookups straight in the map (not a call of Headers.getLower each); a value
    // repeated is read joined, as get() reads it.
    const fields = Headers.fieldsOf(headers);
    const hostField = fields.get("host");
    const hostValue = hostField === undefined ? null : fieldText(hostField);
    try {
      // (without either header there is no body: no framing to work out)
      framing = fields.get("transfer-encoding") === undefined && fields.get("content-length") === undefined ? NO_FRAMING : requestFraming(head);
      if (framing.kind === "length" && framing.length > this.limits.maxBodyBytes) throw new HttpError(413, "request body too large");
      if (minor === 1 && hostValue === null) throw new HttpError(400, "missing Host header");
      // an authority only (RFC 9110 §7.2): "Host: x/admin#" must not change the path the handler sees
      if (hostValue !== null && hostValue !== this.#lastGoodHost) {
        if (!/^[A-Za-z0-9.\-_~!$&'()*+,;=%]*(:\d{0,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{0,5})?$/.test(hostValue)) {
          throw new HttpError(400, "malformed Host header");
        }
        this.#lastGoodHost = hostValue; // clients repeat the same Host: check it once
      }
    } catch (e) {
      return this.#fail(stream, e, minor).then(CLOSE);
    }
    const connectionField = fields.get("connection");
    const connection = connectionField === undefined ? null : fieldText(connectionField).toLowerCase();
    const keepAlive = !last && (minor === 1 ? connection === null || !/\bclose\b/.test(connection) : connection !== null && /\bkeep-alive\b/.test(connection));
    this.stats.requests++;

    const expectField = minor === 1 ? fields.get("expect") : undefined;
    const expectContinue = expectField !== undefined && fieldText(expectField).toLowerCase() === "100-continue";
    // Most requests have no body: they share one reader that has nothing to read or drain.
    const body = framing.kind === "none" && !expectContinue ? NO_BODY : new BodyReader(reader, framing, this.limits, stream, expectContinue);
    const target = head.target;
    let url = target;
    if (target.charCodeAt(0) === 47 /* / */) {
      const host = hostValue ?? "localhost", last = this.#lastUrl;
      if (target === last.target && host === last.host) url = last.url;
      else {
        url = last.url = `http://${host}${target}`;
        last.host = host;
        last.target = target;
      }
    }
    const hasBody = framing.kind !== "none" && head.method !== "GET" && head.method !== "HEAD";
    let request: Request;
    try {
      request = Request.fromServer(url, head.method, headers, hasBody ? body.toReadable() : null);
    } catch (e) {
      return this.#fail(stream, new HttpError(400, e instanceof Error ? e.message : "bad request"), minor).then(CLOSE);
    }
    let result: Response | Promise<Response>;
    try {
      result = this.handler(request, info);
    } catch (e) {
      return this.#handlerFailed(stream, e, head, body);
    }
    if (result instanceof Response) {
      // #respond written out for the usual case (written at once, no body to drain): a call less
      const written = this.#writeResponse(stream, result, head, keepAlive);
      if (written === true && body === NO_BODY) return true;
      return this.#drainAfter(written, body);
    }
    reader.pendingResult = result;
    reader.pendingKeepAlive = keepAlive;
    reader.pendingBody = body;
    return PENDING;
  }

  /** The handler threw (or its promise rejected, or it returned no Response). */
  async #handlerFailed(stream: ByteStream, e: unknown, head: RequestHead, body: BodyReader): Promise<boolean> {
    if (body.error instanceof HttpError || body.error instanceof Timeout) {
      await this.#fail(stream, body.error, head.minorVersion);
      return false;
    }
    this.stats.handlerErrors++;
    this.#count(500);
    console.error("serve: handler failed:", e);
    return this.#respond(stream, new Response("500 Internal Server Error\n", { status: 500 }), head, false, body);
  }

  /**
   * Writes the response, then drains what the handler left unread of the request body (or
   * closes): the next pipelined request can only be parsed after it.
   */
  #respond(stream: ByteStream, response: Response, head: RequestHead, keepAlive: boolean, body: BodyReader): boolean | Promise<boolean> {
    return this.#drainAfter(this.#writeResponse(stream, response, head, keepAlive), body);
  }

  /** #respond once the response is written (or being written): the drain, unless the connection closes. */
  #drainAfter(written: boolean | Promise<boolean>, body: BodyReader): boolean | Promise<boolean> {
    if (written === true) return body === NO_BODY || body.finished || body.drain();
    if (written === false) return false;
    return written.then((k) => k && (body.finished || body.drain()));
  }

  /**
   * Writes the status line, headers and body; returns false if the connection must close.
   * A body of known length (none, text or bytes) goes out with its head in one write and,
   * when that fits the send buffer, without any promise: the result is then a boolean.
   */
  #writeResponse(stream: ByteStream, response: Response, head: RequestHead, keepAlive: boolean): boolean | Promise<boolean> {
    const minor = head.minorVersion;
    const status = response.status;
    const source = Body.source(response);
    if (source instanceof ReadableStream) return this.#writeStreamed(stream, response, source, head, keepAlive);
    const noBody = head.method === "HEAD" || status === 204 || status === 304 || (status >= 100 && status < 200);
    const bytes = typeof source === "string" ? encoder.encode(source) : source;
    const flat = Response.flatHeaders(response);
    const length = bytes === null ? -1 : bytes.length;
    // (#date()'s test written out for the usual case, the same second: a call less)
    const now = Date.now(), dateCache = this.#dateCache;
    const date = now < dateCache.until && now >= dateCache.from ? dateCache.text : this.#date();
    const from = this.#lastHeadFrom;
    let headBytes: Uint8Array;
    if (flat !== null && flat === from.flat && status === from.status && response.statusText === from.statusText &&
      minor === from.minor && keepAlive === from.keepAlive && length === from.length && date === from.date) {
      // the same shared header list as the last response's, all else equal: the same head
      headBytes = this.#lastHeadBytes;
    } else {
      headBytes = this.#head(response, flat, bytes, minor, keepAlive, date);
      from.flat = flat;
      from.status = status;
      from.statusText = response.statusText;
      from.minor = minor;
      from.keepAlive = keepAlive;
      from.length = length;
      from.date = date;
    }
    let out = headBytes;
    if (!noBody && bytes !== null && bytes.length > 0) {
      if (bytes.length > 16 * 1024) return this.#writeTwo(stream, headBytes, bytes, keepAlive);
      // One write for head and body: one segment for small responses. tryWrite copies what it
      // is given (ByteStream), so the array of the last response written that way is filled
      // again when the length is the same (the same file again), its head left as it is when
      // it holds the same head bytes (never modified: see #head). The body is copied every
      // time: a handler may have changed the bytes of the array it answers with again.
      const total = headBytes.length + bytes.length;
      out = this.#out;
      if (out.length !== total) {
        out = new Uint8Array(total);
        this.#outHead = null;
      }
      if (this.#outHead !== headBytes) out.set(headBytes, 0);
      out.set(bytes, headBytes.length);
      if (stream.tryWrite !== undefined && stream.tryWrite(out)) {
        this.#out = out;
        this.#outHead = headBytes;
        return keepAlive;
      }
      // write() may keep the array until it is sent: it is no longer ours to fill
      if (out === this.#out) {
        this.#out = NO_BYTES;
        this.#outHead = null;
      }
    } else if (stream.tryWrite !== undefined && stream.tryWrite(out)) {
      // fits the send buffer now: done, without a call through write()
      return keepAlive;
    }
    const written = stream.write(out);
    if (written === WRITTEN) return keepAlive;
    return written.then(() => keepAlive);
  }

  /** The bytes of a response head for a body of known length (`bytes`, or none). */
  #head(response: Response, flat: readonly string[] | null, bytes: Uint8Array | null, minor: number, keepAlive: boolean, date: string): Uint8Array {
    const status = response.status;
    let extra = "";
    if (flat !== null) {
      // headers nobody asked for as a Headers: written from the constructor's flat list
      let lines = "";
      let hasLength = false, hasDate = false;
      for (let i = 0; i < flat.length; i += 2) {
        const name = flat[i]!;
        if (name === "content-length") {
          if (bytes !== null) continue; // the body's real length wins (below)
          hasLength = true;
        } else if (name === "date") hasDate = true;
        lines += `${name}: ${flat[i + 1]!}\r\n`;
      }
      if (bytes !== null) lines += `content-length: ${bytes.length}\r\n`;
      else if (status !== 204 && status !== 304 && !hasLength) lines += "content-length: 0\r\n";
      if (!hasDate) lines += `date: ${date}\r\n`;
      extra = lines;
    } else {
      extra = this.#headerLines(response.headers, bytes, status, date);
    }
    if (!keepAlive) extra += "connection: close\r\n";
    else if (minor === 0) extra += "connection: keep-alive\r\n";
    const headText = `HTTP/1.${minor} ${status} ${response.statusText}\r\n${extra}\r\n`;
    // the same head as the last response's (same file, same second): its bytes again
    if (headText !== this.#lastHeadText) {
      this.#lastHeadBytes = encoder.encode(headText);
      this.#lastHeadText = headText;
    }
    return this.#lastHeadBytes;
  }

  /** The header lines of a response with a known-length body, from its Headers. */
  #headerLines(headers: Headers, bytes: Uint8Array | null, status: number, date: string): string {
    let extra = "";
    if (bytes !== null) {
      // the body's real length wins over a handler's header: a wrong one would desynchronise
      // the connection (the client would read the rest as the next response)
      if (headers.has("content-length")) headers.delete("content-length");
      extra = `content-length: ${bytes.length}\r\n`;
    } else if (status !== 204 && status !== 304 && !headers.has("content-length")) {
      extra = "content-length: 0\r\n";
    }
    if (!headers.has("date")) extra += `date: ${date}\r\n`;
    return Headers.wireLines(headers) + extra;
  }

  async #writeTwo(stream: ByteStream, headBytes: Uint8Array, bytes: Uint8Array, keepAlive: boolean): Promise<boolean> {
    await stream.write(headBytes);
    await stream.write(bytes);
    return keepAlive;
  }

  /** A response whose body is a stream: chunked for HTTP/1.1 unless the handler gave a length. */
  async #writeStreamed(stream: ByteStream, response: Response, body: ReadableStream<Uint8Array>, head: RequestHead, keepAlive: boolean): Promise<boolean> {
    const minor = head.minorVersion;
    const status = response.status;
    const headers = response.headers;
    const noBody = head.method === "HEAD" || status === 204 || status === 304 || (status >= 100 && status < 200);
    let chunked = false;
    let extra = "";
    const declaredLength = headers.has("content-length") ? Number(headers.get("content-length")) : -1;
    if (declaredLength >= 0 && !(Number.isSafeInteger(declaredLength))) headers.delete("content-length");
    if (headers.has("content-length")) {
      // the handler promised a length: checked while streaming (never more is sent)
    } else if (minor === 1) {
      chunked = true;
      extra += "transfer-encoding: chunked\r\n";
    } else {
      keepAlive = false; // HTTP/1.0: the body ends when the connection does
    }
    if (!headers.has("date")) extra += `date: ${this.#date()}\r\n`;
    if (!keepAlive) extra += "connection: close\r\n";
    else if (minor === 0) extra += "connection: keep-alive\r\n";
    const headText = `HTTP/1.${minor} ${status} ${response.statusText}\r\n${Headers.wireLines(headers)}${extra}\r\n`;
    const headBytes = encoder.encode(headText);
    if (noBody) {
      await body.cancel().catch(() => undefined);
      await stream.write(headBytes);
      return keepAlive;
    }
    // streaming body
    await stream.write(headBytes);
    const declared = headers.get("content-length");
    let sent = 0;
    try {
      for await (const chunk of body) {
        if (!(chunk instanceof Uint8Array)) throw new TypeError("response body streams must yield Uint8Array chunks");
        if (chunk.length === 0) continue;
        sent += chunk.length;
        if (declared !== null && sent > Number(declared)) {
          throw new RangeError(`response body longer than its content-length ${declared}`);
        }
        if (chunked) {
          const size = encoder.encode(chunk.length.toString(16) + "\r\n");
          const framed = new Uint8Array(size.length + chunk.length + 2);
          framed.set(size, 0);
          framed.set(chunk, size.length);
          framed[framed.length - 2] = 13;
          framed[framed.length - 1] = 10;
          await stream.write(framed);
        } else {
          await stream.write(chunk);
        }
      }
    } catch (e) {
      // The head is already out: the only honest signal left is to cut the connection.
      console.error("serve: response body stream failed:", e);
      return false;
    }
    if (chunked) await stream.write(encoder.encode("0\r\n\r\n"));
    if (declared !== null && Number(declared) !== sent) return false;
    return keepAlive;
  }
}

/** Streams one request body out of the connection buffer, de-chunking as needed. */
class BodyReader {
  #remaining: number; // bytes left in the current chunk or the whole body
  #done: boolean;
  #received = 0;
  #continueSent = false;
  error: unknown = null;

  constructor(
    private readonly reader: Reader,
    private readonly framing: BodyFraming,
    private readonly limits: ServerLimits,
    private readonly stream: ByteStream,
    private readonly expectContinue: boolean,
  ) {
    this.#remaining = framing.kind === "length" ? framing.length : 0;
    this.#done = framing.kind === "none";
  }

  toReadable(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        try {
          const chunk = await this.next();
          if (chunk) controller.enqueue(chunk);
          else controller.close();
        } catch (e) {
          this.error = e;
          controller.error(e);
        }
      },
    });
  }

  async #fill(): Promise<void> {
    if (this.expectContinue && !this.#continueSent) {
      this.#continueSent = true;
      await this.stream.write(encoder.encode("HTTP/1.1 100 Continue\r\n\r\n"));
    }
    if (!(await this.reader.fill(this.limits.bodyTimeoutMs))) throw new HttpError(400, "connection closed in the middle of a request body");
  }

  /** The next piece of the body, or null at its end. */
  async next(): Promise<Uint8Array | null> {
    if (this.#done) return null;
    const r = this.reader;
    if (this.framing.kind === "length") {
      if (r.available === 0) await this.#fill();
      const piece = r.take(this.#remaining);
      this.#remaining -= piece.length;
      if (this.#remaining === 0) this.#done = true;
      return piece;
    }
    // chunked (RFC 9112 §7.1)
    if (this.#remaining === 0) {
      const size = await this.#line();
      const m = /^([0-9A-Fa-f]{1,8})(;.*)?$/.exec(size);
      if (!m) throw new HttpError(400, "malformed chunk size");
      this.#remaining = parseInt(m[1]!, 16);
      if (this.#remaining === 0) {
        // trailer section: lines until an empty one
        for (let n = 0; ; n++) {
          if ((await this.#line()) === "") break;
          if (n > this.limits.maxHeaderCount) throw new HttpError(431, "too many trailer fields");
        }
        this.#done = true;
        return null;
      }
      this.#received += this.#remaining;
      if (this.#received > this.limits.maxBodyBytes) throw new HttpError(413, "request body too large");
    }
    if (r.available === 0) await this.#fill();
    const piece = r.take(this.#remaining);
    this.#remaining -= piece.length;
    if (this.#remaining === 0) {
      if ((await this.#line()) !== "") throw new HttpError(400, "chunk not followed by CRLF");
    }
    return piece;
  }

  async #line(): Promise<string> {
    const r = this.reader;
    for (;;) {
      const lf = r.buf.subarray(r.start, r.end).indexOf(10);
      if (lf >= 0) {
        let end = r.start + lf;
        const lineEnd = end + 1;
        if (end > r.start && r.buf[end - 1] === 13) end--;
        let s = "";
        for (let i = r.start; i < end; i++) s += String.fromCharCode(r.buf[i]!);
        r.start = lineEnd;
        return s;
      }
      if (r.available > 4096) throw new HttpError(400, "chunk line too long");
      await this.#fill();
    }
  }

  /** True when nothing is left to drain (no body, or all of it read without error). */
  get finished(): boolean {
    return this.#done && this.error === null && !(this.expectContinue && !this.#continueSent);
  }

  /** Consumes what the handler did not read, up to a limit; false if the connection must close. */
  async drain(): Promise<boolean> {
    if (this.error) return false;
    let drained = 0;
    try {
      for (;;) {
        if (this.expectContinue && !this.#continueSent) return false; // never asked for it: don't wait
        const piece = await this.next();
        if (!piece) return true;
        drained += piece.length;
        if (drained > 1024 * 1024) return false;
      }
    } catch {
      return false;
    }
  }
}

/** The body of every request without one (never read from: its error stays null, drain() is true). */
const NO_BODY = new BodyReader(null as unknown as Reader, NO_FRAMING, DEFAULT_LIMITS, null as unknown as ByteStream, false);

/** Joins byte chunks (re-exported for handlers that collect bodies). */
export { concatChunks };
