/**
 * HTTP/1.1 message syntax (RFC 9112): the request head parser and the response head
 * writer. Pure functions over bytes and strings, shared by the server and its tests.
 */
import { hw, isNative } from "../../hw.ts";
import { Headers } from "../../web/headers.ts";

/** A parse failure that maps to a status code (400, 414, 431, 501, 505). */
export class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export interface RequestHead {
  method: string;
  target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1 */
  minorVersion: number;
  headers: Headers;
  /** total bytes of the head including the final CRLFCRLF */
  length: number;
}

export interface HeadLimits {
  maxRequestLineBytes: number;
  maxHeaderBytes: number;
  maxHeaderCount: number;
}


/**
 * Finds the end of the head (index just past CRLFCRLF, or LF LF) in buf[from, end) or -1:
 * natively in the guest (platform/runtime/httphead.c, one call instead of a loop of calls and
 * element reads per line), findHeadEndScript elsewhere (the reference).
 */
export const findHeadEnd: (buf: Uint8Array, from: number, end: number) => number = isNative ? hw.httpHeadEnd : findHeadEndScript;

/** findHeadEnd in TypeScript: the reference, and the path on Node. */
export function findHeadEndScript(buf: Uint8Array, from: number, end: number): number {
  // LF by LF with the native indexOf (a loop over every byte is slow in an interpreter).
  // Only the search past the last LF before `end` looks beyond it, and indexOf is a memchr,
  // cheaper over several KiB than a view: a view ending at `end` (same indices) only when
  // very much of the buffer lies beyond it.
  const hay = buf.length - end > 64 * 1024 ? buf.subarray(0, end) : buf;
  for (let i = hay.indexOf(10, Math.max(from, 0)); i >= 0 && i < end; i = hay.indexOf(10, i + 1)) {
    if (i + 1 < end && buf[i + 1] === 10) return i + 2;
    if (i + 2 < end && buf[i + 1] === 13 && buf[i + 2] === 10) return i + 3;
  }
  return -1;
}

export function latin1(buf: Uint8Array, start: number, end: number): string {
  let s = "";
  for (let i = start; i < end; i += 4096) {
    s += String.fromCharCode.apply(null, buf.subarray(i, Math.min(end, i + 4096)) as unknown as number[]);
  }
  return s;
}

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const METHOD = HEADER_NAME;
const TARGET = /^[\x21-\x7e]+$/;

/** NUL anywhere, or a CR not followed by LF, makes a head malformed (RFC 9112 §2.2). */
function hasBadBytes(text: string): boolean {
  if (text.indexOf("\0") >= 0) return true;
  for (let cr = text.indexOf("\r"); cr >= 0; cr = text.indexOf("\r", cr + 2)) {
    if (text.charCodeAt(cr + 1) !== 10) return true;
  }
  return false;
}

/**
 * Strings that already passed a check, so that the names, methods and targets clients send
 * again and again are checked once (a regexp run is the costly part of parsing a head here).
 * Bounded: once full, further strings are simply checked every time.
 */
class Checked {
  readonly #seen = new Map<string, string>();
  constructor(private readonly pattern: RegExp, private readonly limit: number) {}
  /** `value` if it matches (with its lower-case form for names), null if not. */
  lower(value: string): string | null {
    const known = this.#seen.get(value);
    if (known !== undefined) return known;
    if (!this.pattern.test(value)) return null;
    const lower = value.toLowerCase();
    if (this.#seen.size < this.limit) this.#seen.set(value, lower);
    return lower;
  }
}
const checkedNames = new Checked(HEADER_NAME, 512);
const checkedMethods = new Checked(METHOD, 64);
const checkedTargets = new Checked(TARGET, 256);

/** The native parser in the guest (platform/runtime/httphead.c); null on Node. */
const nativeHead = isNative ? hw.httpHead : null;

/** What each of the native parser's error codes means (-1 is index 1). */
const HEAD_ERRORS: readonly (readonly [number, string])[] = [
  [400, "bad request"],
  [400, "malformed head (NUL or bare CR)"],
  [414, "request line too long"],
  [400, "malformed request line"],
  [400, "malformed method"],
  [400, "malformed request target"],
  [505, "HTTP version not supported"],
  [400, "malformed HTTP version"],
  [400, "obsolete header line folding"],
  [400, "malformed header line"],
  [400, "malformed header name"],
  [431, "too many header fields"],
];

/**
 * Parses a request head from buf[start, headEnd) (headEnd from findHeadEnd): natively in
 * the guest, by the same rules as parseRequestHeadScript (the reference). With `into`, the
 * native parser's answer is written into that record instead of a new one (the server keeps
 * one per connection, which reads one head at a time): the result may or may not be `into`.
 */
export function parseRequestHead(buf: Uint8Array, start: number, headEnd: number, limits: HeadLimits, into?: RequestHead): RequestHead {
  if (nativeHead === null) return parseRequestHeadScript(buf, start, headEnd, limits);
  return fromNative(nativeHead(buf, start, headEnd, limits.maxRequestLineBytes, limits.maxHeaderCount), headEnd - start, into);
}

/** A RequestHead from httpHead()'s answer, in `into` if given (exported for the check that both parsers agree). */
export function fromNative(r: (string | number)[] | number, length: number, into?: RequestHead): RequestHead {
  if (typeof r === "number") {
    const [status, message] = HEAD_ERRORS[-r] ?? HEAD_ERRORS[0]!;
    throw new HttpError(status, message);
  }
  const headers = Headers.fromFields(r, 3);
  if (into === undefined) return { method: r[0] as string, target: r[1] as string, minorVersion: r[2] as number, headers, length };
  into.method = r[0] as string;
  into.target = r[1] as string;
  into.minorVersion = r[2] as number;
  into.headers = headers;
  into.length = length;
  return into;
}

/**
 * Parses a request head from buf[start, headEnd) (headEnd from findHeadEnd). The head is
 * decoded once; lines, names and values are then cut with native string operations and
 * checked with one regular expression each, remembered for the strings clients repeat —
 * per-character loops and regexp runs are the slow part of an interpreter. Leading empty lines are ignored (RFC 9112 §2.2).
 */
export function parseRequestHeadScript(buf: Uint8Array, start: number, headEnd: number, limits: HeadLimits): RequestHead {
  const text = latin1(buf, start, headEnd);
  if (hasBadBytes(text)) throw new HttpError(400, "malformed head (NUL or bare CR)");
  // Lines are cut by position in `text` (no array of lines, one slice per name and value).
  const n = text.length;
  let pos = 0;
  let requestLine = "";
  while (pos < n) {
    let nl = text.indexOf("\n", pos);
    if (nl < 0) nl = n;
    let le = nl;
    if (le > pos && text.charCodeAt(le - 1) === 13) le--;
    const ls = pos;
    pos = nl + 1;
    if (le > ls) {
      requestLine = text.slice(ls, le);
      break;
    }
  }
  if (requestLine.length > limits.maxRequestLineBytes) throw new HttpError(414, "request line too long");
  const sp1 = requestLine.indexOf(" ");
  const sp2 = requestLine.indexOf(" ", sp1 + 1);
  if (sp1 <= 0 || sp2 <= sp1 + 1 || requestLine.indexOf(" ", sp2 + 1) >= 0) throw new HttpError(400, "malformed request line");
  const method = requestLine.slice(0, sp1);
  const target = requestLine.slice(sp1 + 1, sp2);
  const version = requestLine.slice(sp2 + 1);
  if (checkedMethods.lower(method) === null) throw new HttpError(400, "malformed method");
  if (target.length > 256 ? !TARGET.test(target) : checkedTargets.lower(target) === null) throw new HttpError(400, "malformed request target");
  let minorVersion: number;
  if (version === "HTTP/1.1") minorVersion = 1;
  else if (version === "HTTP/1.0") minorVersion = 0;
  else if (/^HTTP\/\d\.\d$/.test(version)) throw new HttpError(505, "HTTP version not supported");
  else throw new HttpError(400, "malformed HTTP version");
  const headers = new Headers();
  let count = 0;
  while (pos < n) {
    let nl = text.indexOf("\n", pos);
    if (nl < 0) nl = n;
    let le = nl;
    if (le > pos && text.charCodeAt(le - 1) === 13) le--;
    const ls = pos;
    pos = nl + 1;
    if (le === ls) continue;
    const first = text.charCodeAt(ls);
    if (first === 32 || first === 9) throw new HttpError(400, "obsolete header line folding");
    const colon = text.indexOf(":", ls);
    if (colon <= ls || colon >= le) throw new HttpError(400, "malformed header line");
    const name = checkedNames.lower(text.slice(ls, colon));
    if (name === null) throw new HttpError(400, "malformed header name");
    if (++count > limits.maxHeaderCount) throw new HttpError(431, "too many header fields");
    // OWS is SP / HTAB only (RFC 9110 §5.6.3)
    let vs = colon + 1, ve = le;
    while (vs < ve && (text.charCodeAt(vs) === 32 || text.charCodeAt(vs) === 9)) vs++;
    while (ve > vs && (text.charCodeAt(ve - 1) === 32 || text.charCodeAt(ve - 1) === 9)) ve--;
    Headers.appendRaw(headers, name, text.slice(vs, ve));
  }
  return { method, target, minorVersion, headers, length: headEnd - start };
}

export type BodyFraming = { kind: "none" } | { kind: "length"; length: number } | { kind: "chunked" };

/** The framing of every request without a body (shared: nobody modifies a framing). */
export const NO_FRAMING: BodyFraming = { kind: "none" };

/** How the request body is delimited (RFC 9112 §6.3); rejects ambiguous framing. */
export function requestFraming(head: RequestHead): BodyFraming {
  const te = Headers.getLower(head.headers, "transfer-encoding");
  const cl = Headers.getLower(head.headers, "content-length");
  if (te !== null) {
    if (cl !== null) throw new HttpError(400, "both Transfer-Encoding and Content-Length");
    if (head.minorVersion === 0) throw new HttpError(400, "Transfer-Encoding in an HTTP/1.0 request");
    const codings = te.toLowerCase().split(",").map((s) => s.trim());
    if (codings[codings.length - 1] !== "chunked") throw new HttpError(400, "the final transfer coding is not chunked");
    if (codings.length > 1) throw new HttpError(501, `unsupported transfer coding ${te}`);
    return { kind: "chunked" };
  }
  if (cl !== null) {
    // Repeated identical values (a list) are allowed; anything else is an attack vector.
    const values = cl.split(",").map((s) => s.trim());
    if (!values.every((s) => /^\d{1,15}$/.test(s)) || values.some((s) => s !== values[0])) {
      throw new HttpError(400, "malformed Content-Length");
    }
    const length = Number(values[0]);
    return length === 0 ? NO_FRAMING : { kind: "length", length };
  }
  return NO_FRAMING;
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** RFC 9110 §5.6.7 IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT". */
export function httpDate(ms: number): string {
  const d = new Date(ms);
  const p2 = (n: number) => String(n).padStart(2, "0");
  return `${DAYS[d.getUTCDay()]}, ${p2(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ` +
    `${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:${p2(d.getUTCSeconds())} GMT`;
}

/** Parses IMF-fixdate (and the obsolete RFC 850 / asctime forms via Date.parse); NaN if bad. */
export function parseHttpDate(text: string): number {
  const m = /^[A-Za-z]{3}, (\d{2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/.exec(text.trim());
  if (!m) return Date.parse(text);
  const month = MONTHS.indexOf(m[2]!);
  if (month < 0) return NaN;
  return Date.UTC(Number(m[3]), month, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]));
}
