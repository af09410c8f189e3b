/** `Request` (WHATWG Fetch §5.4) for the guest: what a `serve` handler receives. */
import { arrayBufferOf, bytesOf, sourceOf, streamOf, textOf, type BodyInit, type BodySource } from "./body.ts";
import { Headers, type HeadersInit } from "./headers.ts";
import { ReadableStream } from "./streams.ts";

export interface RequestInit {
  method?: string;
  headers?: HeadersInit;
  body?: BodyInit;
  signal?: AbortSignal | null;
}

const METHOD = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const NORMALIZED = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"]);

/** The server's request for the next constructor call (Request.fromServer), taken as it is. */
const fromServer = { pending: false, method: "", headers: null as Headers | null, body: null as ReadableStream<Uint8Array> | null };

export class Request {
  // `declare`: assigned once in the constructor (no field initializer pass per request)
  declare readonly method: string;
  declare readonly url: string;
  declare readonly headers: Headers;
  declare readonly signal: AbortSignal | null;

  // The body (WHATWG Fetch §5.3, a mixin: no base class, see body.ts).
  #source: BodySource;
  #used: boolean;

  get bodyUsed(): boolean {
    return this.#used;
  }

  get body(): ReadableStream<Uint8Array> | null {
    const s = this.#source;
    if (s === null || s instanceof ReadableStream) return s;
    return (this.#source = streamOf(s));
  }

  bytes(): Promise<Uint8Array> {
    if (this.#used) return Promise.reject(new TypeError("body already used"));
    this.#used = true;
    return bytesOf(this.#source);
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    return arrayBufferOf(await this.bytes());
  }

  async text(): Promise<string> {
    const s = this.#source;
    if (typeof s === "string" && !this.#used) {
      this.#used = true;
      return s;
    }
    return textOf(await this.bytes());
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }

  constructor(input: string | Request, init?: RequestInit) {
    const server = fromServer;
    if (server.pending) {
      // checked by the server's parser, and the headers are this request's alone: no copy
      server.pending = false;
      this.#source = server.body;
      this.#used = false;
      this.method = server.method;
      this.url = input as string;
      this.headers = server.headers!;
      this.signal = null;
      server.headers = server.body = null;
      return;
    }
    init ??= {};
    const from = input instanceof Request ? input : null;
    const body = init.body !== undefined ? init.body : from ? from.body : null;
    // the usual bodies (none, text, bytes) without a call of sourceOf
    this.#source = body === null || body === undefined ? null : typeof body === "string" || body instanceof Uint8Array ? body : sourceOf(body);
    this.#used = false;
    let method = init.method ?? from?.method ?? "GET";
    if (!METHOD.test(method)) throw new TypeError(`invalid method: ${JSON.stringify(method)}`);
    if (!NORMALIZED.has(method) && NORMALIZED.has(method.toUpperCase())) method = method.toUpperCase();
    if ((method === "GET" || method === "HEAD") && init.body != null) {
      throw new TypeError("a GET or HEAD request cannot have a body");
    }
    this.method = method;
    this.url = from ? from.url : String(input);
    this.headers = new Headers(init.headers ?? from?.headers);
    this.signal = init.signal ?? from?.signal ?? null;
  }

  /**
   * @internal The HTTP server's request: `method` comes from its parser (already a valid
   * token) and `headers` is a fresh object nobody else holds, so it is taken over, not copied.
   */
  static fromServer(url: string, method: string, headers: Headers, body: ReadableStream<Uint8Array> | null): Request {
    if (method !== "GET" && !NORMALIZED.has(method) && NORMALIZED.has(method.toUpperCase())) method = method.toUpperCase();
    const server = fromServer;
    server.pending = true;
    server.method = method;
    server.headers = headers;
    server.body = body;
    return new Request(url);
  }
}
