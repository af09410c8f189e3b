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

/*
 * The body mixin (WHATWG Fetch §5.3: bodyUsed, body, bytes(), arrayBuffer(), text(), json()).
 * As in the standard there is no base class: `Request` and `Response` each keep their body in
 * private fields of their own (#source, #used) and answer these members through the functions
 * below. A derived class costs here, per object: a constructor call for `super()` and a field
 * initializer call per class with private fields, and every request makes a Request and a
 * Response.
 */

/** The source of the first `body` read: a stream of the text's or bytes' one chunk (source neither null nor a stream). */
export function streamOf(source: string | Uint8Array): ReadableStream<Uint8Array> {
  const bytes = typeof source === "string" ? encoder.encode(source) : source;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });
}

/** All the bytes of a body being consumed (bytes()). */
export async function bytesOf(source: BodySource): Promise<Uint8Array> {
  if (source === null) return new Uint8Array(0);
  if (typeof source === "string") return encoder.encode(source);
  if (source instanceof Uint8Array) return source;
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of source) {
    chunks.push(chunk);
    total += chunk.length;
  }
  return concatChunks(chunks, total);
}

/** The ArrayBuffer of bytes(): the bytes' own buffer when they fill it, else a copy. */
export function arrayBufferOf(b: Uint8Array): ArrayBuffer {
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength
    ? (b.buffer as ArrayBuffer)
    : (b.slice().buffer as ArrayBuffer);
}

/** The text of bytes(). */
export function textOf(b: Uint8Array): string {
  return decoder.decode(b);
}
