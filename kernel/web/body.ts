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

/** What a body is, for the server's fast path. */
export type BodySource =
  | { kind: "none" }
  | { kind: "bytes"; bytes: Uint8Array }
  | { kind: "text"; text: string }
  | { kind: "stream"; stream: ReadableStream<Uint8Array> };

/** The source of every body-less Request and Response (never modified: a body's source is replaced, not changed). */
const NONE: BodySource = { kind: "none" };

export function sourceOf(init: BodyInit | undefined): BodySource {
  if (init === null || init === undefined) return NONE;
  if (typeof init === "string") return { kind: "text", text: init };
  if (init instanceof Uint8Array) return { kind: "bytes", bytes: init };
  if (init instanceof ArrayBuffer) return { kind: "bytes", bytes: new Uint8Array(init) };
  if (init instanceof ReadableStream) return { kind: "stream", stream: init };
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
    this.#source = sourceOf(init);
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
    if (s.kind === "none") return null;
    if (s.kind === "stream") return s.stream;
    const bytes = s.kind === "text" ? encoder.encode(s.text) : s.bytes;
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes);
        controller.close();
      },
    });
    this.#source = { kind: "stream", stream };
    return stream;
  }

  async bytes(): Promise<Uint8Array> {
    if (this.#used) throw new TypeError("body already used");
    this.#used = true;
    const s = this.#source;
    switch (s.kind) {
      case "none": return new Uint8Array(0);
      case "bytes": return s.bytes;
      case "text": return encoder.encode(s.text);
      case "stream": {
        const chunks: Uint8Array[] = [];
        let total = 0;
        for await (const chunk of s.stream) {
          chunks.push(chunk);
          total += chunk.length;
        }
        return concatChunks(chunks, total);
      }
    }
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    const b = await this.bytes();
    return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength
      ? (b.buffer as ArrayBuffer)
      : (b.slice().buffer as ArrayBuffer);
  }

  async text(): Promise<string> {
    if (this.#source.kind === "text" && !this.#used) {
      this.#used = true;
      return this.#source.text;
    }
    return decoder.decode(await this.bytes());
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }
}
