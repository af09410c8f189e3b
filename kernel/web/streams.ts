/**
 * A small `ReadableStream` (WHATWG Streams §4) for the guest, where QuickJS has none:
 * default readers, a chunk queue with a high-water mark counted in chunks, pull-based
 * back-pressure, cancel, async iteration and `ReadableStream.from`. Enough for streaming
 * HTTP bodies both ways without buffering them whole; byte streams and tee() are not here.
 */
export interface ReadableStreamController<R> {
  readonly desiredSize: number | null;
  enqueue(chunk: R): void;
  close(): void;
  error(reason?: unknown): void;
}

export interface UnderlyingSource<R> {
  start?(controller: ReadableStreamController<R>): void | Promise<void>;
  pull?(controller: ReadableStreamController<R>): void | Promise<void>;
  cancel?(reason?: unknown): void | Promise<void>;
}

export type ReadResult<R> = { done: false; value: R } | { done: true; value: undefined };

type State = "readable" | "closed" | "errored";

export class ReadableStream<R = Uint8Array> implements AsyncIterable<R> {
  #queue: R[] = [];
  #state: State = "readable";
  #storedError: unknown;
  #source: UnderlyingSource<R>;
  #highWaterMark: number;
  #started = false;
  #pulling = false;
  #pullAgain = false;
  #waiting: { resolve: (r: ReadResult<R>) => void; reject: (e: unknown) => void }[] = [];
  #reader: ReadableStreamDefaultReader<R> | null = null;
  #controller: ReadableStreamController<R>;

  constructor(source: UnderlyingSource<R> = {}, strategy: { highWaterMark?: number } = {}) {
    this.#source = source;
    this.#highWaterMark = strategy.highWaterMark ?? 1;
    const stream = this;
    this.#controller = {
      get desiredSize() {
        return stream.#state === "errored" ? null : stream.#state === "closed" ? 0 : stream.#highWaterMark - stream.#queue.length;
      },
      enqueue: (chunk: R) => this.#enqueue(chunk),
      close: () => this.#close(),
      error: (reason?: unknown) => this.#error(reason),
    };
    Promise.resolve(source.start?.(this.#controller)).then(
      () => {
        this.#started = true;
        this.#maybePull();
      },
      (e: unknown) => this.#error(e),
    );
  }

  /** A stream of the values of a (async) iterable. */
  static from<T>(iterable: Iterable<T> | AsyncIterable<T>): ReadableStream<T> {
    const iterator = Symbol.asyncIterator in iterable
      ? (iterable as AsyncIterable<T>)[Symbol.asyncIterator]()
      : (iterable as Iterable<T>)[Symbol.iterator]();
    return new ReadableStream<T>({
      async pull(controller) {
        const r = await iterator.next();
        if (r.done) controller.close();
        else controller.enqueue(r.value);
      },
      async cancel(reason) {
        await iterator.return?.(reason);
      },
    });
  }

  get locked(): boolean {
    return this.#reader !== null;
  }

  getReader(): ReadableStreamDefaultReader<R> {
    if (this.#reader) throw new TypeError("ReadableStream is locked to a reader");
    this.#reader = new ReadableStreamDefaultReader(this, (r) => this.#read(r), () => {
      this.#reader = null;
    }, (reason) => this.#cancel(reason));
    return this.#reader;
  }

  cancel(reason?: unknown): Promise<void> {
    if (this.#reader) return Promise.reject(new TypeError("cannot cancel a locked stream"));
    return this.#cancel(reason);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<R> {
    const reader = this.getReader();
    let finished = false;
    try {
      for (;;) {
        const r = await reader.read();
        if (r.done) {
          finished = true;
          return;
        }
        yield r.value;
      }
    } finally {
      if (!finished) await reader.cancel();
      reader.releaseLock();
    }
  }

  #enqueue(chunk: R): void {
    if (this.#state !== "readable") throw new TypeError("enqueue on a closed or errored stream");
    const waiter = this.#waiting.shift();
    if (waiter) waiter.resolve({ done: false, value: chunk });
    else this.#queue.push(chunk);
    this.#maybePull();
  }

  #close(): void {
    if (this.#state !== "readable") return;
    this.#state = "closed";
    if (this.#queue.length === 0) this.#flushWaiters();
  }

  #error(reason: unknown): void {
    if (this.#state !== "readable") return;
    this.#state = "errored";
    this.#storedError = reason;
    this.#queue = [];
    for (const w of this.#waiting.splice(0)) w.reject(reason);
  }

  async #cancel(reason: unknown): Promise<void> {
    if (this.#state === "errored") throw this.#storedError;
    if (this.#state === "closed" && this.#queue.length === 0) return;
    this.#queue = [];
    this.#state = "closed";
    this.#flushWaiters();
    await this.#source.cancel?.(reason);
  }

  #flushWaiters(): void {
    for (const w of this.#waiting.splice(0)) w.resolve({ done: true, value: undefined });
  }

  #read(r: { resolve: (r: ReadResult<R>) => void; reject: (e: unknown) => void }): void {
    if (this.#queue.length > 0) {
      r.resolve({ done: false, value: this.#queue.shift()! });
      if (this.#state === "closed" && this.#queue.length === 0) this.#flushWaiters();
      else this.#maybePull();
      return;
    }
    if (this.#state === "closed") return r.resolve({ done: true, value: undefined });
    if (this.#state === "errored") return r.reject(this.#storedError);
    this.#waiting.push(r);
    this.#maybePull();
  }

  #maybePull(): void {
    if (!this.#started || this.#state !== "readable" || !this.#source.pull) return;
    if (this.#queue.length >= this.#highWaterMark && this.#waiting.length === 0) return;
    if (this.#pulling) {
      this.#pullAgain = true;
      return;
    }
    this.#pulling = true;
    Promise.resolve()
      .then(() => this.#source.pull!(this.#controller))
      .then(
        () => {
          this.#pulling = false;
          if (this.#pullAgain) {
            this.#pullAgain = false;
            this.#maybePull();
          }
        },
        (e: unknown) => this.#error(e),
      );
  }
}

export class ReadableStreamDefaultReader<R> {
  #read: ((r: { resolve: (r: ReadResult<R>) => void; reject: (e: unknown) => void }) => void) | null;
  #release: () => void;
  #cancel: (reason: unknown) => Promise<void>;

  /** @internal use stream.getReader() */
  constructor(
    _stream: ReadableStream<R>,
    read: (r: { resolve: (r: ReadResult<R>) => void; reject: (e: unknown) => void }) => void,
    release: () => void,
    cancel: (reason: unknown) => Promise<void>,
  ) {
    this.#read = read;
    this.#release = release;
    this.#cancel = cancel;
  }

  read(): Promise<ReadResult<R>> {
    const read = this.#read;
    if (!read) return Promise.reject(new TypeError("reader released"));
    return new Promise((resolve, reject) => read({ resolve, reject }));
  }

  cancel(reason?: unknown): Promise<void> {
    return this.#read ? this.#cancel(reason) : Promise.reject(new TypeError("reader released"));
  }

  releaseLock(): void {
    if (!this.#read) return;
    this.#read = null;
    this.#release();
  }
}
