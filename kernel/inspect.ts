/**
 * A value inspector that prints like Node's util.inspect with its default options (depth 2,
 * breakLength 80, compact 3, no colours): what console.log shows. It follows Node's
 * algorithm (lib/internal/util/inspect.js) for the common types so output matches Node
 * byte for byte on plain data; the rarer corners (Proxy detection, Promise state, hidden
 * properties) are out of reach without engine hooks and are approximated.
 */

/** Options of inspect(); a subset of Node's. */
export interface InspectOptions {
  /** Levels of nesting shown before `[Object]`; default 2, Infinity for all. */
  depth?: number;
  /** Line width before an object is broken over several lines; default 80. */
  breakLength?: number;
  /** Array, Set and Map entries shown before "... n more items"; default 100. */
  maxArrayLength?: number;
  /** Characters of a string shown before "... n more characters"; default 10000. */
  maxStringLength?: number;
}

interface Context {
  depth: number;
  breakLength: number;
  maxArrayLength: number;
  maxStringLength: number;
  indentationLvl: number;
  currentDepth: number;
  seen: object[];
  circular: Map<object, number> | undefined;
}

/** Rewrites an engine stack (bundle positions) into source positions; set by init.ts. */
let stackMapper: (stack: string) => string = (stack) => stack;

/** Installs the function that source-maps stack traces (identity until called). */
export function setStackMapper(mapper: (stack: string) => string): void {
  stackMapper = mapper;
}

const COMPACT = 3;
const MIN_LINE_WIDTH = 16;

const enum Kind {
  Object,
  Array,
  ArrayExtras,
}

/** Returns a string representation of `value`, like Node's util.inspect. */
export function inspect(value: unknown, options?: InspectOptions): string {
  const ctx: Context = {
    depth: options?.depth ?? 2,
    breakLength: options?.breakLength ?? 80,
    maxArrayLength: options?.maxArrayLength ?? 100,
    maxStringLength: options?.maxStringLength ?? 10000,
    indentationLvl: 0,
    currentDepth: 0,
    seen: [],
    circular: undefined,
  };
  return formatValue(ctx, value, 0);
}

// ---- primitives ----------------------------------------------------------------------

const ESCAPE_TEST = /[\x00-\x1f\x27\x5c\x7f-\x9f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const ESCAPE_TEST_NO_QUOTE = /[\x00-\x1f\x5c\x7f-\x9f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const ESCAPE_ALL = /[\x00-\x1f\x27\x5c\x7f-\x9f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const ESCAPE_ALL_NO_QUOTE = /[\x00-\x1f\x5c\x7f-\x9f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const IDENTIFIER = /^[a-zA-Z_][a-zA-Z_0-9]*$/;

function hex(code: number, width: number): string {
  return code.toString(16).toUpperCase().padStart(width, "0");
}

function escapeChar(ch: string): string {
  const c = ch.charCodeAt(0);
  switch (c) {
    case 8: return "\\b";
    case 9: return "\\t";
    case 10: return "\\n";
    case 12: return "\\f";
    case 13: return "\\r";
    case 39: return "\\'";
    case 92: return "\\\\";
  }
  return c < 0x100 ? `\\x${hex(c, 2)}` : `\\u${hex(c, 4)}`;
}

/** Quotes a string like Node: single quotes, else double, else backticks; escapes controls. */
export function quoteString(str: string): string {
  let quote = "'";
  let test = ESCAPE_TEST;
  let all = ESCAPE_ALL;
  if (str.includes("'")) {
    if (!str.includes('"')) quote = '"';
    else if (!str.includes("`") && !str.includes("${")) quote = "`";
    if (quote !== "'") {
      test = ESCAPE_TEST_NO_QUOTE;
      all = ESCAPE_ALL_NO_QUOTE;
    }
  }
  if (!test.test(str)) return quote + str + quote;
  return quote + str.replace(all, escapeChar) + quote;
}

function formatNumber(n: number): string {
  return Object.is(n, -0) ? "-0" : `${n}`;
}

function formatString(ctx: Context, value: string): string {
  let trailer = "";
  if (value.length > ctx.maxStringLength) {
    const remaining = value.length - ctx.maxStringLength;
    value = value.slice(0, ctx.maxStringLength);
    trailer = `... ${remaining} more character${remaining > 1 ? "s" : ""}`;
  }
  if (value.length > MIN_LINE_WIDTH && value.length > ctx.breakLength - ctx.indentationLvl - 4) {
    const lines = value.split(/(?<=\n)/);
    if (lines.length > 1) {
      const indent = " ".repeat(ctx.indentationLvl);
      return lines.map(quoteString).join(` +\n${indent}  `) + trailer;
    }
  }
  return quoteString(value) + trailer;
}

function formatPrimitive(ctx: Context, value: unknown): string {
  switch (typeof value) {
    case "string": return formatString(ctx, value);
    case "number": return formatNumber(value);
    case "bigint": return `${value}n`;
    case "boolean": return `${value}`;
    case "undefined": return "undefined";
    case "symbol": return value.toString();
  }
  return String(value);
}

// ---- objects -------------------------------------------------------------------------

function getConstructorName(obj: object): string | null {
  let proto: object | null = obj;
  while (proto !== null) {
    const desc = Object.getOwnPropertyDescriptor(proto, "constructor");
    if (desc !== undefined && typeof desc.value === "function" && desc.value.name !== "") {
      return desc.value.name as string;
    }
    proto = Object.getPrototypeOf(proto) as object | null;
  }
  return null;
}

function getPrefix(constructor: string | null, tag: string, fallback: string, size = ""): string {
  if (constructor === null) {
    if (tag !== "" && fallback !== tag) return `[${fallback}${size}: null prototype] [${tag}] `;
    return `[${fallback}${size}: null prototype] `;
  }
  if (tag !== "" && constructor !== tag) return `${constructor}${size} [${tag}] `;
  return `${constructor}${size} `;
}

function isIndexKey(key: string): boolean {
  const n = Number(key);
  return n >>> 0 === n && `${n}` === key && n !== 4294967295;
}

function ownKeys(value: object, skipIndices: boolean): (string | symbol)[] {
  let keys: (string | symbol)[] = Object.keys(value);
  if (skipIndices) keys = keys.filter((k) => !isIndexKey(k as string));
  const symbols = Object.getOwnPropertySymbols(value);
  for (const s of symbols) {
    if (Object.prototype.propertyIsEnumerable.call(value, s)) keys.push(s);
  }
  return keys;
}

const TYPED_ARRAY_PROTO = Object.getPrototypeOf(Uint8Array.prototype) as object;
const typedArrayTag = Object.getOwnPropertyDescriptor(TYPED_ARRAY_PROTO, Symbol.toStringTag)!.get!;

function typedArrayName(value: object): string | undefined {
  return typedArrayTag.call(value) as string | undefined;
}

function functionBase(value: Function, constructor: string | null, tag: string): string {
  const source = Function.prototype.toString.call(value);
  if (source.startsWith("class") && /^class(\s|\{)/.test(source)) {
    let base = `[class ${value.name !== "" ? value.name : "(anonymous)"}`;
    const superclass = Object.getPrototypeOf(value) as { name?: string } | null;
    if (constructor !== "Function" && constructor !== null) base += ` [${constructor}]`;
    if (superclass !== null && superclass !== Function.prototype && superclass.name) base += ` extends ${superclass.name}`;
    return base + "]";
  }
  let type = "Function";
  if (constructor === "AsyncFunction" || constructor === "GeneratorFunction" || constructor === "AsyncGeneratorFunction") {
    type = constructor;
  }
  let base = `[${type}`;
  if (constructor === null) base += " (null prototype)";
  base += value.name === "" ? " (anonymous)" : `: ${value.name}`;
  base += "]";
  if (constructor !== type && constructor !== null) base += ` ${constructor}`;
  if (tag !== "" && constructor !== tag) base += ` [${tag}]`;
  return base;
}

/** The text of an Error as Node shows it: the stack with a "Name: message" first line. */
export function errorStackText(err: Error): string {
  let name = "Error";
  let message = "";
  try {
    name = err.name === undefined ? "Error" : String(err.name);
    message = err.message === undefined ? "" : String(err.message);
  } catch {
    // getters that throw: keep defaults
  }
  const header = message === "" ? name : `${name}: ${message}`;
  let stack: unknown;
  try {
    stack = err.stack;
  } catch {
    stack = undefined;
  }
  if (typeof stack !== "string" || stack === "") return `[${header}]`;
  // QuickJS stacks hold only the frames; V8 stacks start with the header.
  const frames = /^\s+at /.test(stack) ? `${header}\n${stack}` : stack;
  let mapped = frames;
  try {
    mapped = stackMapper(frames);
  } catch {
    mapped = frames;
  }
  if (mapped.endsWith("\n")) mapped = mapped.slice(0, -1);
  if (!mapped.includes("\n    at")) return `[${mapped}]`;
  return mapped;
}

function formatErrorBase(ctx: Context, err: Error, keys: (string | symbol)[]): string {
  let stack = errorStackText(err);
  // Keys that the stack already shows are not repeated.
  for (const name of ["name", "message", "stack"]) {
    const i = keys.indexOf(name);
    if (i !== -1) {
      const v = (err as unknown as Record<string, unknown>)[name];
      if (typeof v === "string" && stack.includes(v)) keys.splice(i, 1);
    }
  }
  if ("cause" in err && !keys.includes("cause")) keys.push("cause");
  const errors = (err as { errors?: unknown }).errors;
  if (Array.isArray(errors) && !keys.includes("errors")) keys.push("errors");
  if (ctx.indentationLvl !== 0) {
    const indentation = " ".repeat(ctx.indentationLvl);
    stack = stack.replace(/\n/g, `\n${indentation}`);
  }
  return stack;
}

function formatValue(ctx: Context, value: unknown, recurseTimes: number): string {
  if (typeof value !== "object" && typeof value !== "function") return formatPrimitive(ctx, value);
  if (value === null) return "null";
  if (ctx.seen.includes(value)) {
    if (ctx.circular === undefined) ctx.circular = new Map();
    let index = ctx.circular.get(value);
    if (index === undefined) {
      index = ctx.circular.size + 1;
      ctx.circular.set(value, index);
    }
    return `[Circular *${index}]`;
  }
  return formatRaw(ctx, value, recurseTimes);
}

type Formatter = (ctx: Context, value: object, recurseTimes: number) => string[];

function formatRaw(ctx: Context, value: object, recurseTimes: number): string {
  const constructor = getConstructorName(value);
  let tag = "";
  try {
    const t = (value as { [Symbol.toStringTag]?: unknown })[Symbol.toStringTag];
    if (typeof t === "string" && t !== "" && t !== constructor) tag = t;
  } catch {
    tag = "";
  }
  let keys: (string | symbol)[];
  let base = "";
  let formatter: Formatter = formatNothing;
  let braces: [string, string];
  let noIterator = true;
  let extrasType = Kind.Object;

  // Iterable built-ins first, as Node does.
  if (Array.isArray(value)) {
    keys = ownKeys(value, true);
    const prefix = constructor !== "Array" || tag !== "" ? getPrefix(constructor, tag, "Array", `(${value.length})`) : "";
    braces = [`${prefix}[`, "]"];
    if (value.length === 0 && keys.length === 0) return `${braces[0]}]`;
    extrasType = Kind.ArrayExtras;
    formatter = formatArray;
    noIterator = false;
  } else if (value instanceof Set) {
    keys = ownKeys(value, false);
    const prefix = getPrefix(constructor, tag, "Set", `(${value.size})`);
    formatter = formatSet;
    if (value.size === 0 && keys.length === 0) return `${prefix}{}`;
    braces = [`${prefix}{`, "}"];
    noIterator = false;
  } else if (value instanceof Map) {
    keys = ownKeys(value, false);
    const prefix = getPrefix(constructor, tag, "Map", `(${value.size})`);
    formatter = formatMap;
    if (value.size === 0 && keys.length === 0) return `${prefix}{}`;
    braces = [`${prefix}{`, "}"];
    noIterator = false;
  } else if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    keys = ownKeys(value, true);
    const name = typedArrayName(value) ?? "TypedArray";
    const length = (value as unknown as { length: number }).length;
    const fallback = constructor === null ? name : constructor;
    const prefix = getPrefix(constructor, tag === name ? "" : tag, fallback, `(${length})`);
    braces = [`${prefix}[`, "]"];
    if (length === 0 && keys.length === 0) return `${braces[0]}]`;
    formatter = formatTypedArray;
    extrasType = Kind.ArrayExtras;
    noIterator = false;
  } else {
    keys = ownKeys(value, false);
    braces = ["{", "}"];
  }

  if (noIterator) {
    if (constructor === "Object" && tag === "") {
      if (keys.length === 0) return "{}";
    } else if (typeof value === "function") {
      base = functionBase(value, constructor, tag);
      if (keys.length === 0) return base;
    } else if (value instanceof RegExp) {
      base = RegExp.prototype.toString.call(value);
      const prefix = getPrefix(constructor, tag, "RegExp");
      if (prefix !== "RegExp ") base = `${prefix}${base}`;
      if (keys.length === 0) return base;
    } else if (value instanceof Date) {
      const time = value.getTime();
      base = Number.isNaN(time) ? "Invalid Date" : value.toISOString();
      const prefix = getPrefix(constructor, tag, "Date");
      if (prefix !== "Date ") base = `${prefix}${base}`;
      if (keys.length === 0) return base;
    } else if (value instanceof Error) {
      base = formatErrorBase(ctx, value, keys);
      if (keys.length === 0) return base;
    } else if (value instanceof ArrayBuffer) {
      const prefix = getPrefix(constructor, tag, "ArrayBuffer");
      braces = [`${prefix}{`, "}"];
      formatter = formatArrayBuffer;
    } else if (value instanceof DataView) {
      braces = [`${getPrefix(constructor, tag, "DataView")}{`, "}"];
      formatter = formatDataView;
    } else if (value instanceof Promise) {
      braces = [`${getPrefix(constructor, tag, "Promise")}{`, "}"];
    } else if (value instanceof WeakSet || value instanceof WeakMap) {
      const prefix = getPrefix(constructor, tag, value instanceof WeakSet ? "WeakSet" : "WeakMap");
      return `${prefix}{ <items unknown> }`;
    } else if (value instanceof Number || value instanceof String || value instanceof Boolean ||
      value instanceof BigInt || value instanceof Symbol) {
      const prim = (value as { valueOf(): unknown }).valueOf();
      const type = value instanceof Number ? "Number" : value instanceof String ? "String"
        : value instanceof Boolean ? "Boolean" : value instanceof BigInt ? "BigInt" : "Symbol";
      base = `[${type}`;
      if (type !== constructor) base += constructor === null ? " (null prototype)" : ` (${constructor})`;
      base += `: ${formatPrimitive({ ...ctx, breakLength: Infinity }, prim)}]`;
      if (tag !== "" && tag !== constructor) base += ` [${tag}]`;
      if (value instanceof String) keys = keys.filter((k) => typeof k !== "string" || !isIndexKey(k));
      if (keys.length === 0) return base;
    } else {
      if (keys.length === 0) return `${getCtxName(constructor, tag, "Object")}{}`;
      braces[0] = `${getCtxName(constructor, tag, "Object")}{`;
    }
  }

  if (recurseTimes > ctx.depth) {
    let name = getCtxName(constructor, tag, "Object").slice(0, -1);
    if (constructor !== null) name = `[${name}]`;
    return name;
  }
  recurseTimes += 1;
  ctx.seen.push(value);
  ctx.currentDepth = recurseTimes;
  let output: string[];
  try {
    output = formatter(ctx, value, recurseTimes);
    for (const key of keys) output.push(formatProperty(ctx, value, recurseTimes, key, extrasType));
  } finally {
    ctx.seen.pop();
  }

  const index = ctx.circular?.get(value);
  if (index !== undefined) {
    const reference = `<ref *${index}>`;
    if (base === "") braces[0] = `${reference} ${braces[0]}`;
    else base = `${reference} ${base}`;
  }
  return reduceToSingleString(ctx, output, base, braces, extrasType, recurseTimes, value);
}

function getCtxName(constructor: string | null, tag: string, fallback: string): string {
  return getPrefix(constructor, tag, fallback);
}

function formatNothing(): string[] {
  return [];
}

function formatProperty(ctx: Context, value: object, recurseTimes: number, key: string | symbol | number, type: Kind): string {
  let str: string;
  const desc = Object.getOwnPropertyDescriptor(value, key) ??
    { value: (value as Record<string | symbol, unknown>)[key as string], enumerable: true };
  if (desc.value !== undefined) {
    ctx.indentationLvl += 2;
    str = formatValue(ctx, desc.value, recurseTimes);
    ctx.indentationLvl -= 2;
  } else if (desc.get !== undefined) {
    str = desc.set !== undefined ? "[Getter/Setter]" : "[Getter]";
  } else if (desc.set !== undefined) {
    str = "[Setter]";
  } else {
    str = "undefined";
  }
  if (type === Kind.Array) return str;
  let name: string;
  if (typeof key === "symbol") {
    name = `[${key.toString().replace(ESCAPE_ALL, escapeChar)}]`;
  } else if (key === "__proto__") {
    name = "['__proto__']";
  } else if (desc.enumerable === false) {
    name = `[${String(key).replace(ESCAPE_ALL, escapeChar)}]`;
  } else if (IDENTIFIER.test(String(key))) {
    name = String(key);
  } else {
    name = quoteString(String(key));
  }
  return `${name}: ${str}`;
}

function formatArray(ctx: Context, value: object, recurseTimes: number): string[] {
  const array = value as unknown[];
  const length = array.length;
  const max = Math.min(ctx.maxArrayLength, length);
  const remaining = length - max;
  const output: string[] = [];
  for (let i = 0; i < max; i++) {
    if (!Object.prototype.hasOwnProperty.call(array, i)) return formatArrayWithHoles(ctx, array, recurseTimes, max, output, i);
    output.push(formatProperty(ctx, array, recurseTimes, i, Kind.Array));
  }
  if (remaining > 0) output.push(moreItems(remaining));
  return output;
}

function formatArrayWithHoles(ctx: Context, array: unknown[], recurseTimes: number, max: number, output: string[], from: number): string[] {
  let i = from;
  let shown = output.length;
  const length = array.length;
  while (i < length && shown < max) {
    if (Object.prototype.hasOwnProperty.call(array, i)) {
      output.push(formatProperty(ctx, array, recurseTimes, i, Kind.Array));
      i++;
    } else {
      let j = i;
      while (j < length && !Object.prototype.hasOwnProperty.call(array, j)) j++;
      const holes = j - i;
      output.push(`<${holes} empty item${holes > 1 ? "s" : ""}>`);
      i = j;
    }
    shown++;
  }
  const remaining = length - i;
  if (remaining > 0) output.push(moreItems(remaining));
  return output;
}

function moreItems(remaining: number): string {
  return `... ${remaining} more item${remaining > 1 ? "s" : ""}`;
}

function formatTypedArray(ctx: Context, value: object, _recurseTimes: number): string[] {
  const array = value as unknown as ArrayLike<number | bigint>;
  const length = array.length;
  const max = Math.min(ctx.maxArrayLength, length);
  const output: string[] = new Array(max);
  for (let i = 0; i < max; i++) {
    const v = array[i]!;
    output[i] = typeof v === "bigint" ? `${v}n` : formatNumber(v);
  }
  if (length > max) output.push(moreItems(length - max));
  return output;
}

function formatSet(ctx: Context, value: object, recurseTimes: number): string[] {
  const set = value as Set<unknown>;
  const max = Math.min(ctx.maxArrayLength, set.size);
  const output: string[] = [];
  ctx.indentationLvl += 2;
  let i = 0;
  for (const v of set) {
    if (i >= max) break;
    output.push(formatValue(ctx, v, recurseTimes));
    i++;
  }
  ctx.indentationLvl -= 2;
  if (set.size > max) output.push(moreItems(set.size - max));
  return output;
}

function formatMap(ctx: Context, value: object, recurseTimes: number): string[] {
  const map = value as Map<unknown, unknown>;
  const max = Math.min(ctx.maxArrayLength, map.size);
  const output: string[] = [];
  ctx.indentationLvl += 2;
  let i = 0;
  for (const [k, v] of map) {
    if (i >= max) break;
    output.push(`${formatValue(ctx, k, recurseTimes)} => ${formatValue(ctx, v, recurseTimes)}`);
    i++;
  }
  ctx.indentationLvl -= 2;
  if (map.size > max) output.push(moreItems(map.size - max));
  return output;
}

function hexBytes(bytes: Uint8Array, max: number): string {
  let s = "";
  const n = Math.min(max, bytes.length);
  for (let i = 0; i < n; i++) s += (i === 0 ? "" : " ") + hex(bytes[i]!, 2).toLowerCase();
  const remaining = bytes.length - n;
  if (remaining > 0) s += ` ... ${remaining} more byte${remaining > 1 ? "s" : ""}`;
  return `<${s}>`;
}

function formatArrayBuffer(ctx: Context, value: object): string[] {
  const buffer = value as ArrayBuffer;
  return [`[Uint8Contents]: ${hexBytes(new Uint8Array(buffer), 50)}`, `byteLength: ${buffer.byteLength}`];
}

function formatDataView(ctx: Context, value: object, recurseTimes: number): string[] {
  const view = value as DataView;
  ctx.indentationLvl += 2;
  const buffer = formatValue(ctx, view.buffer, recurseTimes);
  ctx.indentationLvl -= 2;
  return [`byteLength: ${view.byteLength}`, `byteOffset: ${view.byteOffset}`, `buffer: ${buffer}`];
}

function isBelowBreakLength(ctx: Context, output: string[], start: number, base: string): boolean {
  let totalLength = output.length + start;
  if (totalLength + output.length > ctx.breakLength) return false;
  for (const entry of output) {
    totalLength += entry.length;
    if (totalLength > ctx.breakLength) return false;
  }
  return base === "" || !base.includes("\n");
}

function reduceToSingleString(ctx: Context, output: string[], base: string, braces: [string, string],
  extrasType: Kind, recurseTimes: number, value: object): string {
  const entries = output.length;
  if (extrasType === Kind.ArrayExtras && entries > 6) output = groupArrayElements(ctx, output, value);
  if (ctx.currentDepth - recurseTimes < COMPACT && entries === output.length) {
    const start = output.length + ctx.indentationLvl + braces[0].length + base.length + 10;
    if (isBelowBreakLength(ctx, output, start, base)) {
      const joined = output.join(", ");
      if (!joined.includes("\n")) {
        return `${base !== "" ? `${base} ` : ""}${braces[0]} ${joined} ${braces[1]}`;
      }
    }
  }
  const indentation = `\n${" ".repeat(ctx.indentationLvl)}`;
  return `${base !== "" ? `${base} ` : ""}${braces[0]}${indentation}  ${output.join(`,${indentation}  `)}${indentation}${braces[1]}`;
}

/** Lays out long arrays of short entries in aligned columns, as Node does. */
function groupArrayElements(ctx: Context, output: string[], value: object): string[] {
  let totalLength = 0;
  let maxLength = 0;
  let outputLength = output.length;
  // The "... n more items" entry does not take part in the layout.
  if (ctx.maxArrayLength < output.length) outputLength--;
  const separatorSpace = 2;
  const dataLen: number[] = new Array(outputLength);
  for (let i = 0; i < outputLength; i++) {
    const len = output[i]!.length;
    dataLen[i] = len;
    totalLength += len + separatorSpace;
    if (maxLength < len) maxLength = len;
  }
  const actualMax = maxLength + separatorSpace;
  if (actualMax * 3 + ctx.indentationLvl < ctx.breakLength &&
    (totalLength / actualMax > 5 || maxLength <= 6)) {
    const approxCharHeights = 2.5;
    const averageBias = Math.sqrt(actualMax - totalLength / output.length);
    const biasedMax = Math.max(actualMax - 3 - averageBias, 1);
    const columns = Math.min(
      Math.round(Math.sqrt(approxCharHeights * biasedMax * outputLength) / biasedMax),
      Math.floor((ctx.breakLength - ctx.indentationLvl) / actualMax),
      COMPACT * 4,
      15,
    );
    if (columns <= 1) return output;
    const tmp: string[] = [];
    const maxLineLength: number[] = [];
    for (let i = 0; i < columns; i++) {
      let lineLength = 0;
      for (let j = i; j < output.length; j += columns) {
        const len = dataLen[j];
        if (len !== undefined && len > lineLength) lineLength = len;
      }
      maxLineLength.push(lineLength + separatorSpace);
    }
    let padStart = true;
    const items = value as Record<number, unknown>;
    for (let i = 0; i < output.length; i++) {
      const v = items[i];
      if (typeof v !== "number" && typeof v !== "bigint") {
        padStart = false;
        break;
      }
    }
    for (let i = 0; i < outputLength; i += columns) {
      const max = Math.min(i + columns, outputLength);
      let str = "";
      let j = i;
      for (; j < max - 1; j++) {
        const cell = `${output[j]}, `;
        const width = maxLineLength[j - i]!;
        str += padStart ? cell.padStart(width, " ") : cell.padEnd(width, " ");
      }
      if (padStart) {
        str += output[j]!.padStart(maxLineLength[j - i]! - separatorSpace, " ");
      } else {
        str += output[j]!;
      }
      tmp.push(str);
    }
    if (ctx.maxArrayLength < output.length) tmp.push(output[outputLength]!);
    output = tmp;
  }
  return output;
}

// ---- printf-style formatting (console.log) -------------------------------------------

function formatNumberArg(value: unknown, parse: (s: string) => number): string {
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "symbol") return "NaN";
  return formatNumber(parse(value as string));
}

/** Formats console arguments like Node's util.format: %s %d %i %f %j %o %O %c %%. */
export function format(...args: unknown[]): string {
  const first = args[0];
  let a = 0;
  let str = "";
  if (typeof first === "string") {
    if (args.length === 1) return first;
    let tempStr: string | undefined;
    let lastPos = 0;
    a = 1;
    for (let i = 0; i < first.length - 1; i++) {
      if (first.charCodeAt(i) !== 37) continue; // '%'
      const nextChar = first.charCodeAt(++i);
      if (a < args.length) {
        const arg = args[a];
        switch (nextChar) {
          case 115: // 's'
            if (typeof arg === "number") tempStr = formatNumber(arg);
            else if (typeof arg === "bigint") tempStr = `${arg}n`;
            else if (typeof arg !== "object" || arg === null || !hasBuiltInToString(arg)) tempStr = String(arg);
            else tempStr = inspect(arg, { depth: 0 });
            break;
          case 106: // 'j'
            try {
              tempStr = JSON.stringify(arg);
            } catch {
              tempStr = "[Circular]";
            }
            break;
          case 100: // 'd'
            tempStr = typeof arg === "object" && arg !== null ? formatNumber(Number(arg)) : formatNumberArg(arg, Number);
            break;
          case 79: // 'O'
            tempStr = inspect(arg);
            break;
          case 111: // 'o'
            tempStr = inspect(arg, { depth: 4 });
            break;
          case 105: // 'i'
            tempStr = typeof arg === "bigint" ? `${arg}n` : formatNumberArg(arg, (s) => parseInt(String(s)));
            break;
          case 102: // 'f'
            tempStr = typeof arg === "symbol" ? "NaN" : formatNumber(parseFloat(String(arg)));
            break;
          case 99: // 'c'
            tempStr = "";
            break;
          case 37: // '%'
            str += first.slice(lastPos, i);
            lastPos = i + 1;
            continue;
          default:
            continue;
        }
        if (lastPos !== i - 1) str += first.slice(lastPos, i - 1);
        str += tempStr;
        lastPos = i + 1;
        a++;
      } else if (nextChar === 37) {
        str += first.slice(lastPos, i);
        lastPos = i + 1;
      }
    }
    if (lastPos !== 0) {
      a = a === 0 ? 1 : a;
      if (lastPos < first.length) str += first.slice(lastPos);
    } else {
      str = first;
    }
  }
  while (a < args.length) {
    const value = args[a];
    str += a > 0 ? " " : "";
    str += typeof value !== "string" ? inspect(value) : value;
    a++;
  }
  return str;
}

/** Names of the built-in constructors (computed on first use: boot time matters). */
let builtInNames: Set<string> | undefined;

/** True when the object's toString is a built-in one (then %s inspects it, like Node). */
function hasBuiltInToString(value: object): boolean {
  if (typeof (value as { toString?: unknown }).toString !== "function") return true;
  if (Object.prototype.hasOwnProperty.call(value, "toString")) return false;
  let pointer: object | null = value;
  do {
    pointer = Object.getPrototypeOf(pointer) as object | null;
  } while (pointer !== null && !Object.prototype.hasOwnProperty.call(pointer, "toString"));
  if (pointer === null) return true;
  const descriptor = Object.getOwnPropertyDescriptor(pointer, "constructor");
  return descriptor !== undefined && typeof descriptor.value === "function" &&
    (builtInNames ??= new Set(Object.getOwnPropertyNames(globalThis).filter((n) => /^[A-Z][a-zA-Z0-9]+$/.test(n))))
      .has((descriptor.value as { name: string }).name);
}
