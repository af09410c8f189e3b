/** `Request` (WHATWG Fetch §5.4) for the guest: what a `serve` handler receives. */
import { Body, type BodyInit } from "./body.ts";
import { Headers, type HeadersInit } from "./headers.ts";

export interface RequestInit {
  method?: string;
  headers?: HeadersInit;
  body?: BodyInit;
  signal?: AbortSignal | null;
}

const METHOD = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const NORMALIZED = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"]);

export class Request extends Body {
  readonly method: string;
  readonly url: string;
  readonly headers: Headers;
  readonly signal: AbortSignal | null;

  constructor(input: string | Request, init: RequestInit = {}) {
    const from = input instanceof Request ? input : null;
    super(init.body !== undefined ? init.body : from ? from.body : null);
    let method = init.method ?? from?.method ?? "GET";
    if (!METHOD.test(method)) throw new TypeError(`invalid method: ${JSON.stringify(method)}`);
    if (NORMALIZED.has(method.toUpperCase())) method = method.toUpperCase();
    if ((method === "GET" || method === "HEAD") && init.body != null) {
      throw new TypeError("a GET or HEAD request cannot have a body");
    }
    this.method = method;
    this.url = from ? from.url : String(input);
    this.headers = new Headers(init.headers ?? from?.headers);
    this.signal = init.signal ?? from?.signal ?? null;
  }
}
