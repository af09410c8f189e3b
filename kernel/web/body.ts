/**
 * The body of a Request or Response (WHATWG Fetch §5.1): kept as given (string or bytes)
 * so the HTTP server can send it with one write and a Content-Length, turned into a
 * ReadableStream only when someone asks for `.body`.
 */
import { TextDecoder, TextEncoder } from "../encoding.ts";
import { ReadableStream } from "./streams.ts";

export type BodyInit = string | Uint8Array | ArrayBuffer | ReadableStream<Uint8Array> | null;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * What a body holds, for the server's fast path: its text, its bytes, its stream, or null.
 * Kept as given (an ArrayBuffer as a view of it): no record of its own per body.
 */
export type BodySource = string | Uint8Array | ReadableStream<Uint8Array> | null;

export function sourceOf(init: BodyInit | undefined): BodySource {
  if (init === null || init === undefined) return null;
  if (typeof init === "string" || init instanceof Uint8Array || init instanceof ReadableStream) return init;
  if (init instanceof ArrayBuffer) return new Uint8Array(init);
  throw new TypeError("unsupported body type (use a string, Uint8Array, ArrayBuffer or ReadableStream)");
}

export function concatChunks(chunks: readonly Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

export abstract class Body {
  #source: BodySource;
  #used = false;

  constructor(init: BodyInit | undefined) {
    // the usual bodies (none, text, bytes) without a call of sourceOf
    this.#source = init === null || init === undefined ? null : typeof init === "string" || init instanceof Uint8Array ? init : sourceOf(init);
  }

  /** @internal the server's view of the body, without consuming it */
  static source(body: Body): BodySource {
    return body.#source;
  }

  get bodyUsed(): boolean {
    return this.#used;
  }

  get body(): ReadableStream<Uint8Array> | null {
    const s = this.#source;
    if (s === null || s instanceof ReadableStream) return s;
    const bytes = typeof s === "string" ? encoder.encode(s) : s;
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes);
        controller.close();
      },
    });
    this.#source = stream;
    return stream;
  }

  async bytes(): Promise<Uint8Array> {
    if (this.#used) throw new TypeError("body already used");
    this.#used = true;
    const s = this.#source;
    if (s === null) return new Uint8Array(0);
    if (typeof s === "string") return encoder.encode(s);
    if (s instanceof Uint8Array) return s;
    const chunks: Uint8Array[] = [];
    let total = 0;
    for await (const chunk of s) {
      chunks.push(chunk);
      total += chunk.length;
    }
    return concatChunks(chunks, total);
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    const b = await this.bytes();
    return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength
      ? (b.buffer as ArrayBuffer)
      : (b.slice().buffer as ArrayBuffer);
  }

  async text(): Promise<string> {
    const s = this.#source;
    if (typeof s === "string" && !this.#used) {
      this.#used = true;
      return s;
    }
    return decoder.decode(await this.bytes());
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }
}
