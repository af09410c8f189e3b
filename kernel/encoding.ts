/**
 * TextEncoder and TextDecoder (WHATWG Encoding Standard), UTF-8 only: QuickJS has neither.
 *
 * The decoder is the standard's UTF-8 decoder (§ 9.1.1), so malformed input is replaced
 * by U+FFFD exactly as browsers and Node do ("maximal subpart" replacement), and
 * `stream: true` keeps an incomplete trailing sequence for the next call.
 */

/** Code units accumulated before they are turned into a string (bounded for apply()). */
const CHUNK = 8192;

function toBytes(input: unknown): Uint8Array {
  if (input === undefined) return new Uint8Array(0);
  if (input instanceof Uint8Array) return input;
  if (input instanceof ArrayBuffer) return new Uint8Array(input);
  if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  throw new TypeError('The "input" argument must be an instance of ArrayBuffer or ArrayBufferView');
}

/** Encodes strings as UTF-8; lone surrogates become U+FFFD. */
import { hw, isNative } from "./hw.ts";

/** Native UTF-8 encoding in the guest (see platform/runtime/native.c); null on Node. */
const nativeEncode = isNative ? hw.utf8Encode : null;

export class TextEncoder {
  /** Always "utf-8". */
  get encoding(): string {
    return "utf-8";
  }

  /** Returns the UTF-8 bytes of `input`. */
  encode(input: string = ""): Uint8Array {
    const str = String(input);
    if (nativeEncode !== null) {
      const bytes = nativeEncode(str);
      if (bytes !== null) return new Uint8Array(bytes);
    }
    const n = str.length;
    // ASCII fast path: one byte per code unit.
    let i = 0;
    const out = new Uint8Array(n * 3);
    for (; i < n; i++) {
      const c = str.charCodeAt(i);
      if (c >= 0x80) break;
      out[i] = c;
    }
    if (i === n) return out.slice(0, n);
    const written = encodeUtf8(str, i, out, i).written;
    return out.slice(0, i + written);
  }

  /** Encodes into `dest` without splitting a character; returns code units read and bytes written. */
  encodeInto(source: string, destination: Uint8Array): { read: number; written: number } {
    const r = encodeUtf8(String(source), 0, destination, 0);
    return { read: r.read, written: r.written };
  }
}

/** Encodes str[from..] into out[at..] until either ends; returns the end positions. */
function encodeUtf8(str: string, from: number, out: Uint8Array, at: number): { read: number; written: number } {
  const n = str.length;
  const cap = out.length;
  let i = from;
  let j = at;
  while (i < n) {
    let c = str.charCodeAt(i);
    let units = 1;
    if (c < 0x80) {
      if (j >= cap) break;
      out[j++] = c;
      i++;
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < n ? str.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
        units = 2;
      } else {
        c = 0xfffd;
      }
    }
    if (c < 0x800) {
      if (j + 2 > cap) break;
      out[j++] = 0xc0 | (c >> 6);
      out[j++] = 0x80 | (c & 0x3f);
    } else if (c < 0x10000) {
      if (j + 3 > cap) break;
      out[j++] = 0xe0 | (c >> 12);
      out[j++] = 0x80 | ((c >> 6) & 0x3f);
      out[j++] = 0x80 | (c & 0x3f);
    } else {
      if (j + 4 > cap) break;
      out[j++] = 0xf0 | (c >> 18);
      out[j++] = 0x80 | ((c >> 12) & 0x3f);
      out[j++] = 0x80 | ((c >> 6) & 0x3f);
      out[j++] = 0x80 | (c & 0x3f);
    }
    i += units;
  }
  return { read: i - from, written: j - at };
}

/** Options of the TextDecoder constructor. */
export interface TextDecoderOptions {
  fatal?: boolean;
  ignoreBOM?: boolean;
}

/** Options of TextDecoder.decode. */
export interface TextDecodeOptions {
  stream?: boolean;
}

const UTF8_LABELS = new Set(["utf-8", "utf8", "unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "x-unicode20utf8"]);

/** Decodes UTF-8 bytes into strings (labels other than UTF-8 throw RangeError). */
export class TextDecoder {
  readonly fatal: boolean;
  readonly ignoreBOM: boolean;
  // Decoder state (WHATWG names): the code point being assembled and its bounds.
  private codePoint = 0;
  private bytesSeen = 0;
  private bytesNeeded = 0;
  private lowerBoundary = 0x80;
  private upperBoundary = 0xbf;
  /** Whether the BOM check is still to be done for the current stream. */
  private bomPending = true;

  constructor(label: string = "utf-8", options: TextDecoderOptions = {}) {
    const name = String(label).trim().toLowerCase();
    if (!UTF8_LABELS.has(name)) {
      throw new RangeError(`The "${label}" encoding is not supported`);
    }
    this.fatal = Boolean(options.fatal);
    this.ignoreBOM = Boolean(options.ignoreBOM);
  }

  /** Always "utf-8". */
  get encoding(): string {
    return "utf-8";
  }

  /** Decodes `input`; with `{stream: true}` an incomplete trailing sequence waits for the next call. */
  decode(input?: ArrayBuffer | ArrayBufferView, options: TextDecodeOptions = {}): string {
    const bytes = toBytes(input);
    const stream = Boolean(options.stream);
    const n = bytes.length;
    let result = "";
    const units: number[] = [];
    let i = 0;

    // Fast path: no pending sequence, leading ASCII.
    if (this.bytesNeeded === 0) {
      while (i < n && bytes[i]! < 0x80) i++;
      if (i > 0) {
        result = asciiToString(bytes, 0, i);
        if (this.bomPending) this.bomPending = false;
      }
    }

    let cp = this.codePoint;
    let seen = this.bytesSeen;
    let needed = this.bytesNeeded;
    let lower = this.lowerBoundary;
    let upper = this.upperBoundary;

    while (i < n) {
      const b = bytes[i]!;
      if (needed === 0) {
        i++;
        if (b < 0x80) {
          units.push(b);
        } else if (b >= 0xc2 && b <= 0xdf) {
          needed = 1;
          cp = b & 0x1f;
        } else if (b >= 0xe0 && b <= 0xef) {
          if (b === 0xe0) lower = 0xa0;
          if (b === 0xed) upper = 0x9f;
          needed = 2;
          cp = b & 0xf;
        } else if (b >= 0xf0 && b <= 0xf4) {
          if (b === 0xf0) lower = 0x90;
          if (b === 0xf4) upper = 0x8f;
          needed = 3;
          cp = b & 0x7;
        } else {
          if (this.fatal) return this.fail();
          units.push(0xfffd);
        }
      } else if (b < lower || b > upper) {
        // Malformed: emit U+FFFD and reprocess this byte (do not advance i).
        cp = 0;
        needed = 0;
        seen = 0;
        lower = 0x80;
        upper = 0xbf;
        if (this.fatal) return this.fail();
        units.push(0xfffd);
      } else {
        i++;
        lower = 0x80;
        upper = 0xbf;
        cp = (cp << 6) | (b & 0x3f);
        seen++;
        if (seen === needed) {
          if (cp < 0x10000) {
            units.push(cp);
          } else {
            cp -= 0x10000;
            units.push(0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
          }
          cp = 0;
          needed = 0;
          seen = 0;
        }
      }
      if (units.length >= CHUNK) {
        result += this.flushUnits(units, result.length === 0);
        units.length = 0;
      }
    }

    if (needed !== 0 && !stream) {
      cp = 0;
      needed = 0;
      seen = 0;
      lower = 0x80;
      upper = 0xbf;
      if (this.fatal) return this.fail();
      units.push(0xfffd);
    }
    if (units.length > 0) result += this.flushUnits(units, result.length === 0);

    this.codePoint = cp;
    this.bytesSeen = seen;
    this.bytesNeeded = needed;
    this.lowerBoundary = lower;
    this.upperBoundary = upper;
    if (!stream) this.bomPending = true;
    return result;
  }

  /** Turns code units into a string, dropping a leading BOM once per stream unless ignoreBOM. */
  private flushUnits(units: number[], atStart: boolean): string {
    let from = 0;
    if (this.bomPending) {
      this.bomPending = false;
      if (atStart && units[0] === 0xfeff && !this.ignoreBOM) from = 1;
    }
    return String.fromCharCode.apply(null, from === 0 ? units : units.slice(from));
  }

  private fail(): never {
    this.codePoint = 0;
    this.bytesSeen = 0;
    this.bytesNeeded = 0;
    this.lowerBoundary = 0x80;
    this.upperBoundary = 0xbf;
    this.bomPending = true;
    throw new TypeError("The encoded data was not valid for encoding utf-8");
  }
}

function asciiToString(bytes: Uint8Array, from: number, to: number): string {
  let s = "";
  for (let i = from; i < to; i += CHUNK) {
    const end = Math.min(to, i + CHUNK);
    s += String.fromCharCode.apply(null, bytes.subarray(i, end) as unknown as number[]);
  }
  return s;
}
