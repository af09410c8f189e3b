/**
 * `URL` and `URLSearchParams` for the guest (WHATWG URL, the subset a microservice uses):
 * absolute http(s) and other hierarchical URLs, relative resolution against a base, dot
 * segment removal, percent-encoding of path/query, and query parameters. Hosts are kept
 * as given (lower-cased); IDNA and IPv6 zone handling are out of scope.
 */
import { TextEncoder } from "../encoding.ts";
const DEFAULT_PORTS: Record<string, string> = { "http:": "80", "https:": "443", "ws:": "80", "wss:": "443" };

const PATH_CLEAN = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$/;
const QUERY_CLEAN = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/?%#]*$/;

function encodeSet(s: string, keep: RegExp): string {
  // fast path: nothing to encode (the common case for request targets)
  if ((keep === PATH_KEEP ? PATH_CLEAN : QUERY_CLEAN).test(s)) return s;
  let out = "";
  for (const ch of s) {
    if (keep.test(ch)) out += ch;
    else for (const b of new TextEncoder().encode(ch)) out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

const PATH_KEEP = /[A-Za-z0-9\-._~!$&'()*+,;=:@/%]/;
const QUERY_KEEP = /[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]/;

function removeDotSegments(path: string): string {
  if (path.startsWith("/") && !path.includes("/.") && !/%2e/i.test(path)) return path; // nothing to remove
  const out: string[] = [];
  const segments = path.split("/");
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    const last = i === segments.length - 1;
    if (s === "." || s.toLowerCase() === "%2e") {
      if (last) out.push("");
    } else if (s === ".." || /^(\.|%2e){2}$/i.test(s)) {
      if (out.length > 1) out.pop();
      if (last) out.push("");
    } else {
      out.push(s);
    }
  }
  const joined = out.join("/");
  return joined.startsWith("/") ? joined : "/" + joined;
}

export class URLSearchParams implements Iterable<[string, string]> {
  #list: [string, string][] = [];
  #onChange: (() => void) | null = null;

  constructor(init?: string | Record<string, string> | Iterable<readonly [string, string]>) {
    if (typeof init === "string") this.#parse(init);
    else if (init && Symbol.iterator in Object(init)) {
      for (const [k, v] of init as Iterable<readonly [string, string]>) this.#list.push([String(k), String(v)]);
    } else if (init) for (const [k, v] of Object.entries(init)) this.#list.push([k, String(v)]);
  }

  /** @internal keeps URL.search in step */
  static bind(params: URLSearchParams, onChange: () => void): void {
    params.#onChange = onChange;
  }

  /** @internal */
  static reset(params: URLSearchParams, query: string): void {
    params.#list = [];
    params.#parse(query);
  }

  #parse(query: string): void {
    const q = query.startsWith("?") ? query.slice(1) : query;
    for (const part of q.split("&")) {
      if (part === "") continue;
      const eq = part.indexOf("=");
      const k = eq < 0 ? part : part.slice(0, eq);
      const v = eq < 0 ? "" : part.slice(eq + 1);
      this.#list.push([decodeForm(k), decodeForm(v)]);
    }
  }

  get size(): number { return this.#list.length; }
  append(name: string, value: string): void { this.#list.push([name, String(value)]); this.#onChange?.(); }
  delete(name: string): void { this.#list = this.#list.filter(([k]) => k !== name); this.#onChange?.(); }
  get(name: string): string | null { return this.#list.find(([k]) => k === name)?.[1] ?? null; }
  getAll(name: string): string[] { return this.#list.filter(([k]) => k === name).map(([, v]) => v); }
  has(name: string): boolean { return this.#list.some(([k]) => k === name); }
  set(name: string, value: string): void {
    const i = this.#list.findIndex(([k]) => k === name);
    if (i < 0) this.#list.push([name, String(value)]);
    else {
      this.#list[i] = [name, String(value)];
      this.#list = this.#list.filter(([k], j) => k !== name || j === i);
    }
    this.#onChange?.();
  }
  sort(): void { this.#list.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)); this.#onChange?.(); }
  forEach(cb: (value: string, name: string, params: URLSearchParams) => void): void {
    for (const [k, v] of this.#list) cb(v, k, this);
  }
  entries(): IterableIterator<[string, string]> { return this.#list.map(([k, v]) => [k, v] as [string, string])[Symbol.iterator](); }
  keys(): IterableIterator<string> { return this.#list.map(([k]) => k)[Symbol.iterator](); }
  values(): IterableIterator<string> { return this.#list.map(([, v]) => v)[Symbol.iterator](); }
  [Symbol.iterator](): IterableIterator<[string, string]> { return this.entries(); }
  toString(): string { return this.#list.map(([k, v]) => `${encodeForm(k)}=${encodeForm(v)}`).join("&"); }
}

function decodeForm(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, " "));
  } catch {
    return s.replace(/\+/g, " ");
  }
}

function encodeForm(s: string): string {
  return encodeURIComponent(s).replace(/%20/g, "+").replace(/[!'()~]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
}

/** The fields of a parsed absolute URL (the URL cache's entries). */
interface ParsedUrl {
  protocol: string; username: string; password: string; hostname: string;
  port: string; pathname: string; search: string; hash: string;
}
/** Recently parsed absolute URLs by their exact input string. */
const parsed = new Map<string, ParsedUrl>();
const PARSED_LIMIT = 64;

const ABSOLUTE = /^([A-Za-z][A-Za-z0-9+\-.]*):(.*)$/s;

export class URL {
  protocol = "";
  username = "";
  password = "";
  hostname = "";
  port = "";
  pathname = "/";
  #search = "";
  hash = "";
  #params: URLSearchParams | null = null;

  constructor(input: string | URL, base?: string | URL) {
    if (base === undefined && typeof input === "string") {
      // Parsing is a pure function of the string: servers parse the same few URLs over and
      // over, so the fields of recent results are copied instead of parsed again.
      const known = parsed.get(input);
      if (known !== undefined) {
        this.protocol = known.protocol;
        this.username = known.username;
        this.password = known.password;
        this.hostname = known.hostname;
        this.port = known.port;
        this.pathname = known.pathname;
        this.#search = known.search;
        this.hash = known.hash;
        return;
      }
      this.#parse(input, undefined);
      if (parsed.size >= PARSED_LIMIT) parsed.clear();
      parsed.set(input, {
        protocol: this.protocol, username: this.username, password: this.password, hostname: this.hostname,
        port: this.port, pathname: this.pathname, search: this.#search, hash: this.hash,
      });
      return;
    }
    this.#parse(input, base);
  }

  #parse(input: string | URL, base: string | URL | undefined): void {
    const text = String(input).replace(/^[\0- ]+|[\0- ]+$/g, "").replace(/[\t\n\r]/g, "");
    const m = ABSOLUTE.exec(text);
    if (m) this.#parseAbsolute(m[1]!.toLowerCase() + ":", m[2]!);
    else {
      if (base === undefined) throw new TypeError(`Invalid URL: ${text}`);
      const b = base instanceof URL ? base : new URL(base);
      this.#resolve(text, b);
    }
  }

  /** The query's parameters (created on first use; edits update `search`). */
  get searchParams(): URLSearchParams {
    if (this.#params === null) {
      const params = new URLSearchParams(this.#search);
      URLSearchParams.bind(params, () => {
        const s = params.toString();
        this.#search = s ? "?" + s : "";
      });
      this.#params = params;
    }
    return this.#params;
  }

  static canParse(input: string, base?: string): boolean {
    try {
      new URL(input, base);
      return true;
    } catch {
      return false;
    }
  }

  #parseAbsolute(protocol: string, rest: string): void {
    this.protocol = protocol;
    if (!rest.startsWith("//")) {
      this.#setPathQueryFragment(rest, false);
      return;
    }
    rest = rest.slice(2);
    const end = rest.search(/[/?#]/);
    const authority = end < 0 ? rest : rest.slice(0, end);
    this.#parseAuthority(authority);
    this.#setPathQueryFragment(end < 0 ? "" : rest.slice(end), true);
  }

  #parseAuthority(authority: string): void {
    const at = authority.lastIndexOf("@");
    if (at >= 0) {
      const [user, pass] = authority.slice(0, at).split(":", 2);
      this.username = user ?? "";
      this.password = pass ?? "";
      authority = authority.slice(at + 1);
    }
    const m = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(authority);
    if (!m) throw new TypeError(`Invalid URL host: ${authority}`);
    this.hostname = m[1]!.toLowerCase();
    if (/[\s<>^|%]/.test(this.hostname)) throw new TypeError(`Invalid URL host: ${authority}`);
    const port = m[2] ?? "";
    if (port !== "" && Number(port) > 65535) throw new TypeError(`Invalid URL port: ${port}`);
    this.port = port === "" || DEFAULT_PORTS[this.protocol] === String(Number(port)) ? "" : String(Number(port));
    if (this.hostname === "" && this.protocol in DEFAULT_PORTS) throw new TypeError("Invalid URL: empty host");
  }

  #setPathQueryFragment(s: string, hierarchical: boolean): void {
    const hashAt = s.indexOf("#");
    if (hashAt >= 0) {
      this.hash = hashAt === s.length - 1 ? "" : "#" + encodeSet(s.slice(hashAt + 1), QUERY_KEEP);
      s = s.slice(0, hashAt);
    }
    const q = s.indexOf("?");
    if (q >= 0) {
      this.#search = q === s.length - 1 ? "" : "?" + encodeSet(s.slice(q + 1), QUERY_KEEP);
      s = s.slice(0, q);
    }
    this.pathname = hierarchical ? removeDotSegments(encodeSet(s.replace(/\\/g, "/"), PATH_KEEP)) : s;
  }

  #resolve(ref: string, base: URL): void {
    this.protocol = base.protocol;
    if (ref.startsWith("//")) {
      this.#parseAbsolute(base.protocol, ref);
      return;
    }
    this.username = base.username;
    this.password = base.password;
    this.hostname = base.hostname;
    this.port = base.port;
    if (ref === "" || ref.startsWith("#")) {
      this.pathname = base.pathname;
      this.#search = base.#search;
      this.hash = ref.length > 1 ? ref : "";
      return;
    }
    if (ref.startsWith("?")) {
      this.pathname = base.pathname;
      this.#setPathQueryFragment(ref, true);
      this.pathname = base.pathname;
      return;
    }
    const dir = ref.startsWith("/") ? "" : base.pathname.slice(0, base.pathname.lastIndexOf("/") + 1);
    this.#setPathQueryFragment(dir + ref, true);
  }

  get search(): string { return this.#search; }
  set search(value: string) {
    const v = String(value);
    this.#search = v === "" || v === "?" ? "" : encodeSet(v.startsWith("?") ? v : "?" + v, QUERY_KEEP);
    if (this.#params !== null) URLSearchParams.reset(this.#params, this.#search);
  }
  get host(): string { return this.port ? `${this.hostname}:${this.port}` : this.hostname; }
  get origin(): string { return this.protocol in DEFAULT_PORTS ? `${this.protocol}//${this.host}` : "null"; }
  get href(): string {
    const auth = this.username ? `${this.username}${this.password ? ":" + this.password : ""}@` : "";
    const authority = this.hostname !== "" || this.protocol in DEFAULT_PORTS ? `//${auth}${this.host}` : "";
    return `${this.protocol}${authority}${this.pathname}${this.#search}${this.hash}`;
  }
  toString(): string { return this.href; }
  toJSON(): string { return this.href; }
}
