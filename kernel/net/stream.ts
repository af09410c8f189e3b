/**
 * A connected byte stream and a listener that yields them: what the HTTP server needs
 * from TCP. The guest's TCP sockets implement it; on Node, tests adapt `net.Socket`.
 */
export interface ByteStream {
  /** The next chunk of received bytes, or null once the peer has closed its side. */
  read(): Promise<Uint8Array | null>;
  /** Queues bytes for sending; resolves when they are buffered (waits under back-pressure). */
  write(data: Uint8Array): Promise<void>;
  /** Half-closes: sends FIN after the queued bytes. */
  end(): void;
  /** Closes both directions and releases the connection (abortive if data is pending is allowed). */
  close(): void;
  /**
   * Optional: fails a pending read() with `error` at once; the stream stays usable and bytes
   * that arrive later are kept for the next read(). Lets a reader time out without wrapping
   * every read in a promise of its own.
   */
  cancelRead?(error: unknown): void;
  /**
   * Optional: read() with callbacks instead of a promise — exactly one of them is called once,
   * synchronously when the answer is already known. Lets a reader that keeps its own promise
   * skip the stream's (one promise and one job less per read).
   */
  readWith?(onChunk: (chunk: Uint8Array | null) => void, onError: (error: unknown) => void): void;
  /**
   * Optional: readWith() into the caller's buffer: copies up to target.length - offset
   * (at least 1) received bytes to target[offset…] and calls onRead with their count, 0 at
   * the end of the stream; `target` must not change until then. Saves the chunk's array and
   * a copy per read.
   */
  readIntoWith?(target: Uint8Array, offset: number, onRead: (count: number) => void, onError: (error: unknown) => void): void;
  /**
   * Optional: buffers all of `data` at once and returns true when it fits now (what write()
   * would do without waiting); otherwise writes nothing and returns false. Either way the
   * stream neither keeps nor modifies `data`: it copies what it buffers before returning, so
   * the caller may fill the same array again at once (the HTTP server reuses one per response).
   */
  tryWrite?(data: Uint8Array): boolean;
  readonly remoteAddress: string;
  readonly remotePort: number;
}

export interface StreamListener {
  /** The next accepted connection, or null once the listener is closed. */
  accept(): Promise<ByteStream | null>;
  close(): void;
  readonly port: number;
}
