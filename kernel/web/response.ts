/** `Response` (WHATWG Fetch §5.5) for the guest: what a `serve` handler returns. */
import { Body, type BodyInit } from "./body.ts";
import { Headers, type HeadersInit } from "./headers.ts";

export interface ResponseInit {
  status?: number;
  statusText?: string;
  headers?: HeadersInit;
}

/** Reason phrases for the status line (RFC 9110 §15). */
export const STATUS_TEXT: Record<number, string> = {
  100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted",
  204: "No Content", 206: "Partial Content", 301: "Moved Permanently", 302: "Found",
  303: "See Other", 304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect",
  400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
  405: "Method Not Allowed", 406: "Not Acceptable", 408: "Request Timeout", 409: "Conflict",
  410: "Gone", 411: "Length Required", 412: "Precondition Failed", 413: "Content Too Large",
  414: "URI Too Long", 415: "Unsupported Media Type", 416: "Range Not Satisfiable",
  417: "Expectation Failed", 426: "Upgrade Required", 429: "Too Many Requests",
  431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
  502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** The flat header list of a Response given no headers (shared, never modified). */
const NO_FIELDS: readonly string[] = [];

/** (read once: a global and a property read less per Response) */
const ITERATOR = Symbol.iterator;

/** A plain object init (not a Headers, not an iterable of pairs). */
function isRecord(init: HeadersInit): init is Record<string, string> {
  return typeof init === "object" && init !== null && !(init instanceof Headers) && !(ITERATOR in init);
}

/**
 * The last frozen header record a Response was given, and its flat list: a program that
 * answers with the same frozen record again and again (the appliance keeps one per file)
 * finds it here, without the checks of isRecord and the WeakMap lookup of Headers.flatten.
 * (a frozen record cannot change, and flatten() gives its same list every time)
 */
let lastFrozen: object | null = null;
let lastFrozenFlat: readonly string[] = NO_FIELDS;

function hasName(flat: readonly string[], name: string): boolean {
  for (let i = 0; i < flat.length; i += 2) if (flat[i] === name) return true;
  return false;
}

export class Response extends Body {
  // `declare`: assigned once in the constructor, not first defined as undefined by a field
  // initializer (a second pass per Response in QuickJS).
  declare readonly status: number;
  declare readonly statusText: string;
  /** The headers once asked for (or given as a Headers or a list of pairs). */
  #headers: Headers | null;
  /** Headers given as a record, validated but kept flat until someone asks (Headers.flatten). */
  #flat: readonly string[] | null;
  get type(): "default" { return "default"; }
  get redirected(): boolean { return false; }
  get url(): string { return ""; }

  constructor(body: BodyInit = null, init: ResponseInit = {}) {
    super(body);
    const status = init.status ?? 200;
    // (comparisons rather than Number.isInteger and a Set: no native call per Response)
    if (typeof status !== "number" || !(status >= 200 && status <= 599) || status % 1 !== 0) {
      throw new RangeError(`Response status must be an integer from 200 to 599, got ${status}`);
    }
    if (body !== null && (status === 204 || status === 205 || status === 304)) throw new TypeError(`a ${status} response cannot have a body`);
    this.status = status;
    const statusText = init.statusText;
    if (statusText !== undefined && /[\r\n]/.test(statusText)) throw new TypeError("invalid statusText");
    this.statusText = statusText ?? STATUS_TEXT[status] ?? "";
    const h = init.headers;
    // A record (the common case) is validated now but becomes a Headers only if asked for:
    // the server writes it to the wire from the flat list.
    // (a frozen record's list is shared: a copy when something is added)
    let flat: readonly string[] | null;
    if (h === undefined) flat = NO_FIELDS;
    else if (h === lastFrozen) flat = lastFrozenFlat;
    else {
      flat = isRecord(h) ? Headers.flatten(h) : null;
      if (flat !== null && Object.isFrozen(h)) {
        lastFrozen = h;
        lastFrozenFlat = flat;
      }
    }
    if (flat !== null) {
      this.#flat = typeof body === "string" && !hasName(flat, "content-type") ? flat.concat("content-type", "text/plain;charset=UTF-8") : flat;
      this.#headers = null;
    } else {
      const headers = new Headers(h);
      if (typeof body === "string" && !headers.has("content-type")) headers.set("content-type", "text/plain;charset=UTF-8");
      this.#flat = null;
      this.#headers = headers;
    }
  }

  get headers(): Headers {
    let headers = this.#headers;
    if (headers === null) {
      headers = this.#headers = Headers.fromFlat(this.#flat!);
      this.#flat = null;
    }
    return headers;
  }

  /**
   * @internal The headers as [name, value, …] with lower-case names if nobody has asked for
   * `headers` (then nothing can have changed them), else null: the server's fast path.
   */
  static flatHeaders(response: Response): readonly string[] | null {
    return response.#flat;
  }

  get ok(): boolean {
    return this.status >= 200 && this.status < 300;
  }

  /** A JSON response (`Content-Type: application/json`). */
  static json(data: unknown, init: ResponseInit = {}): Response {
    const headers = new Headers(init.headers);
    if (!headers.has("content-type")) headers.set("content-type", "application/json");
    return new Response(JSON.stringify(data), { ...init, headers });
  }

  /** A redirect to `url` with status 301, 302, 303, 307 or 308. */
  static redirect(url: string, status = 302): Response {
    if (![301, 302, 303, 307, 308].includes(status)) throw new RangeError(`invalid redirect status ${status}`);
    return new Response(null, { status, headers: { location: url } });
  }

  static error(): Response {
    throw new TypeError("Response.error() is not supported by the Torito server");
  }
}
