/**
 * `Headers` (WHATWG Fetch §5.2) for the guest, where QuickJS has none: a case-insensitive
 * multimap that keeps insertion order, joins repeated values with ", " (except
 * Set-Cookie, kept apart as getSetCookie() requires), and rejects names and values that
 * could split a header.
 */
export type HeadersInit = Headers | Iterable<readonly [string, string]> | Record<string, string>;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Names already validated, with their lower-case form: most programs use a handful. */
const knownNames = new Map<string, string>();
const KNOWN_NAMES_LIMIT = 256;

function normalizeName(name: string): string {
  const known = knownNames.get(name);
  if (known !== undefined) return known;
  if (!TOKEN.test(name)) throw new TypeError(`invalid header name: ${JSON.stringify(name)}`);
  const lower = name.toLowerCase();
  if (knownNames.size < KNOWN_NAMES_LIMIT) knownNames.set(name, lower);
  return lower;
}

/**
 * The lower-case form of names looked up (get, has), remembered (bounded): programs look up
 * the same few names again and again, and toLowerCase builds a new string character by
 * character, which costs more here than a lookup. Not checked as tokens (a lookup of an
 * invalid name finds nothing), so kept apart from knownNames.
 */
const lookupNames = new Map<string, string>();
const LOOKUP_NAMES_LIMIT = 256;

function lowerName(name: string): string {
  let lower = lookupNames.get(name);
  if (lower === undefined) {
    lower = name.toLowerCase();
    if (name.length <= 64) {
      if (lookupNames.size >= LOOKUP_NAMES_LIMIT) lookupNames.clear();
      lookupNames.set(name, lower);
    }
  }
  return lower;
}

/** Values already validated, with their normalized form: programs send the same ones again and again. */
const knownValues = new Map<string, string>();
const KNOWN_VALUES_LIMIT = 512;

function normalizeValue(value: string): string {
  if (typeof value === "string") {
    const known = knownValues.get(value);
    if (known !== undefined) return known;
    const v = checkValue(value);
    if (value.length <= 256) {
      if (knownValues.size >= KNOWN_VALUES_LIMIT) knownValues.clear();
      knownValues.set(value, v);
    }
    return v;
  }
  return checkValue(String(value));
}

function checkValue(value: string): string {
  let v = value;
  // Regular expressions only when needed: a string scan is native, a regexp run is not cheap here.
  const n = v.length;
  if (n > 0) {
    const first = v.charCodeAt(0), last = v.charCodeAt(n - 1);
    if (first === 32 || first === 9 || last === 32 || last === 9) v = v.replace(/^[\t ]+|[\t ]+$/g, "");
  }
  if (v.indexOf("\r") >= 0 || v.indexOf("\n") >= 0 || v.indexOf("\0") >= 0) {
    throw new TypeError(`invalid header value: ${JSON.stringify(v)}`);
  }
  return v;
}

/**
 * What flatten() made of frozen records (a program that sends the same headers again and
 * again can keep them in a frozen object, validated once).
 */
const frozenFlat = new WeakMap<object, readonly string[]>();

export class Headers implements Iterable<[string, string]> {
  /**
   * lower-case name -> its value, or its values in order once there are several (one array
   * per repeated name, not per field: most fields come once)
   */
  #map = new Map<string, string | string[]>();

  constructor(init?: HeadersInit) {
    if (init === undefined) return;
    if (init instanceof Headers) {
      for (const [name, values] of init.#map) this.#map.set(name, typeof values === "string" ? values : values.slice());
    } else if (Symbol.iterator in Object(init)) {
      for (const pair of init as Iterable<readonly [string, string]>) {
        if (pair.length !== 2) throw new TypeError("Headers: each init entry must be a [name, value] pair");
        this.append(pair[0], pair[1]);
      }
    } else {
      const record = init as Record<string, string>;
      for (const name of Object.keys(record)) this.append(name, record[name]!);
    }
  }

  /** Adds a value, keeping existing ones (trusted internal path: no validation). */
  static appendRaw(headers: Headers, lowerName: string, value: string): void {
    const map = headers.#map;
    const known = map.get(lowerName);
    if (known === undefined) map.set(lowerName, value);
    else if (typeof known === "string") map.set(lowerName, [known, value]);
    else known.push(value);
  }

  append(name: string, value: string): void {
    Headers.appendRaw(this, normalizeName(name), normalizeValue(value));
  }

  set(name: string, value: string): void {
    this.#map.set(normalizeName(name), normalizeValue(value));
  }

  delete(name: string): void {
    this.#map.delete(normalizeName(name));
  }

  get(name: string): string | null {
    // (the cache looked up here first: a call less per known name)
    const values = this.#map.get(lookupNames.get(name) ?? lowerName(name));
    if (values === undefined) return null;
    return typeof values === "string" ? values : values.join(", ");
  }

  /** @internal get() for a name already in lower case (the server's own lookups). */
  static getLower(headers: Headers, lowerName: string): string | null {
    const values = headers.#map.get(lowerName);
    if (values === undefined) return null;
    return typeof values === "string" ? values : values.join(", ");
  }

  /**
   * @internal The map itself (lower-case name -> its value, or its values in order once the
   * name repeats), for the server's own lookups in a request's headers: one call for all of
   * them. Callers only read it.
   */
  static fieldsOf(headers: Headers): ReadonlyMap<string, string | readonly string[]> {
    return headers.#map;
  }

  getSetCookie(): string[] {
    const values = this.#map.get("set-cookie");
    return values === undefined ? [] : typeof values === "string" ? [values] : values.slice();
  }

  has(name: string): boolean {
    return this.#map.has(lookupNames.get(name) ?? lowerName(name));
  }

  forEach(callback: (value: string, name: string, headers: Headers) => void): void {
    for (const [name, value] of this) callback(value, name, this);
  }

  *entries(): IterableIterator<[string, string]> {
    const names = [...this.#map.keys()].sort();
    for (const name of names) {
      const values = this.#map.get(name)!;
      if (typeof values === "string") yield [name, values];
      else if (name === "set-cookie") for (const v of values) yield [name, v];
      else yield [name, values.join(", ")];
    }
  }

  *keys(): IterableIterator<string> {
    for (const [name] of this.entries()) yield name;
  }

  *values(): IterableIterator<string> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }

  /**
   * @internal A record init validated into [name, value, name, value, …] (lower-case names)
   * without building a Headers; null when two keys name the same field (those are joined,
   * which only a Headers does). What `Response` keeps until someone asks for its headers.
   * The list of a frozen record is the same each time: callers must not modify it.
   */
  static flatten(record: Record<string, string>): readonly string[] | null {
    const known = frozenFlat.get(record);
    if (known !== undefined) return known;
    const keys = Object.keys(record);
    const flat: string[] = [];
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      // the caches looked up here first: a call less per name and value when known
      const name = knownNames.get(key) ?? normalizeName(key);
      for (let j = 0; j < flat.length; j += 2) if (flat[j] === name) return null;
      const value = record[key]!;
      flat.push(name, (typeof value === "string" ? knownValues.get(value) : undefined) ?? normalizeValue(value));
    }
    // a frozen record cannot change: its list is kept and shared (never modified by its users)
    if (Object.isFrozen(record)) frozenFlat.set(record, flat);
    return flat;
  }

  /**
   * @internal Headers from trusted [name, value, …] pairs starting at `from` (lower-case
   * names, checked values; repeated names kept in order, as append() keeps them).
   */
  static fromFields(fields: readonly unknown[], from: number): Headers {
    const headers = new Headers();
    const map = headers.#map;
    const n = fields.length;
    // Names usually come once: each set without a lookup first, and only when the map ends up
    // with fewer entries than fields (a name repeated, its first value overwritten) built
    // again with repeated names kept in order.
    for (let i = from; i < n; i += 2) map.set(fields[i] as string, fields[i + 1] as string);
    if (map.size === (n - from) >> 1) return headers;
    map.clear();
    for (let i = from; i < n; i += 2) {
      const name = fields[i] as string;
      const known = map.get(name);
      if (known === undefined) map.set(name, fields[i + 1] as string);
      else if (typeof known === "string") map.set(name, [known, fields[i + 1] as string]);
      else known.push(fields[i + 1] as string);
    }
    return headers;
  }

  /** @internal Headers from a list made by flatten(). */
  static fromFlat(flat: readonly string[]): Headers {
    const headers = new Headers();
    for (let i = 0; i < flat.length; i += 2) headers.#map.set(flat[i]!, flat[i + 1]!);
    return headers;
  }

  /** Raw lines for the wire: "name: value" per value, in insertion order. */
  static wireLines(headers: Headers): string {
    let out = "";
    for (const [name, values] of headers.#map) {
      if (typeof values === "string") out += `${name}: ${values}\r\n`;
      else if (name === "set-cookie") for (const v of values) out += `${name}: ${v}\r\n`;
      else out += `${name}: ${values.join(", ")}\r\n`;
    }
    return out;
  }
}
