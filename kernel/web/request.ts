/** `Request` (WHATWG Fetch §5.4) for the guest: what a `serve` handler receives. */
import { Body, type BodyInit } from "./body.ts";
import { Headers, type HeadersInit } from "./headers.ts";
import type { ReadableStream } from "./streams.ts";

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

export class Request extends Body {
  // `declare`: assigned once in the constructor (no field initializer pass per request)
  declare readonly method: string;
  declare readonly url: string;
  declare readonly headers: Headers;
  declare readonly signal: AbortSignal | null;

  constructor(input: string | Request, init?: RequestInit) {
    const server = fromServer;
    if (server.pending) {
      // checked by the server's parser, and the headers are this request's alone: no copy
      server.pending = false;
      super(server.body);
      this.method = server.method;
      this.url = input as string;
      this.headers = server.headers!;
      this.signal = null;
      server.headers = server.body = null;
      return;
    }
    init ??= {};
    const from = input instanceof Request ? input : null;
    super(init.body !== undefined ? init.body : from ? from.body : null);
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
