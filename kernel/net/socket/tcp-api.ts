/**
 * The app-facing TCP API that the sockets layer wraps: promises over TcpStack.
 * No timers: every promise settles inside TcpStack.input()/poll() (or synchronously in the
 * call when the answer is already known). `now()` is the stack's clock, injected.
 */
import { TcpError } from "./tcp-config.ts";
import { type TcpConnection, type TcpConnectionEvents, TcpState } from "./tcp-connection.ts";
import type { TcpListener, TcpStack } from "./tcp.ts";

interface PendingWrite {
  data: Uint8Array;
  offset: number;
  resolve: () => void;
  reject: (error: TcpError) => void;
}

/** One connected TCP stream. */
export class TcpSocket implements TcpConnectionEvents {
  /**
   * The pending read's callbacks (fields, not a record: a read per request is common): a
   * chunk's (read, readWith) or, while readTarget is set, a count's (readIntoWith).
   */
  private readResolve: ((data: Uint8Array | null) => void) | ((count: number) => void) | null = null;
  private readReject: ((error: TcpError) => void) | null = null;
  /** Where a pending readIntoWith() copies to. */
  private readTarget: Uint8Array | null = null;
  private readOffset = 0;
  private readonly pendingWrites: PendingWrite[] = [];
  private endRequested = false;
  private discardRequested = false;
  private connectWaiter: { resolve: (socket: TcpSocket) => void; reject: (error: TcpError) => void } | null = null;
  /**
   * Called just before a read fails, unless cancelRead() failed it (the connection stays
   * usable then): lets the owner of the socket react without wrapping every read.
   */
  onReadFailure: (() => void) | null = null;

  constructor(private readonly sockets: TcpSockets, readonly connection: TcpConnection) {
    connection.events = this;
  }

  /** Peer address as a uint32 (see formatIpv4). */
  get remoteAddress(): number { return this.connection.remoteAddress; }
  get remotePort(): number { return this.connection.remotePort; }
  get localPort(): number { return this.connection.localPort; }
  /** RFC 9293 state name, for diagnostics. */
  get state(): TcpState { return this.connection.state; }

  /** Next chunk of received bytes; null at end of stream. Rejects with ECONNRESET etc. */
  read(): Promise<Uint8Array | null> {
    return new Promise((resolve, reject) => this.readWith(resolve, reject));
  }

  /** read() with callbacks: one of them is called once, at once when the answer is known. */
  readWith(onChunk: (data: Uint8Array | null) => void, onError: (error: unknown) => void): void {
    const connection = this.connection;
    if (connection.readableLength > 0) onChunk(connection.read());
    else if (!this.endWithoutData(onChunk, null, onError)) {
      this.readResolve = onChunk;
      this.readReject = onError;
    }
  }

  /** readWith() into target[offset…] (see ByteStream.readIntoWith): onRead gets the count, 0 at end of stream. */
  readIntoWith(target: Uint8Array, offset: number, onRead: (count: number) => void, onError: (error: unknown) => void): void {
    const connection = this.connection;
    if (connection.readableLength > 0) onRead(connection.readInto(target, offset));
    else if (!this.endWithoutData(onRead, 0, onError)) {
      this.readResolve = onRead;
      this.readReject = onError;
      this.readTarget = target;
      this.readOffset = offset;
      // In-order data arriving next is copied straight to target (TcpConnection.readTarget).
      connection.readTarget = target;
      connection.readTargetOffset = offset;
    }
  }

  /**
   * A read that finds no data buffered: ends it with the connection's error, with `end` at
   * end of stream, or with EPIPE when another read is pending (the failures tell
   * onReadFailure first). False when it has to wait.
   */
  private endWithoutData<T>(onData: (value: T) => void, end: T, onError: (error: unknown) => void): boolean {
    const connection = this.connection;
    if (connection.error !== null) {
      this.onReadFailure?.();
      onError(connection.error);
    } else if (connection.atEndOfStream) {
      onData(end);
    } else if (this.readResolve !== null) {
      this.onReadFailure?.();
      onError(new TcpError("EPIPE", "a read is already pending"));
    } else {
      return false;
    }
    return true;
  }

  /** Fails a pending read() with `error` (data arriving later stays for the next read). */
  cancelRead(error: unknown): void {
    const reject = this.readReject;
    if (reject === null) return;
    this.readResolve = this.readReject = null;
    this.readTarget = null;
    this.connection.readTarget = null;
    reject(error as TcpError);
  }

  /** Buffers `data`; resolves once all of it is in the send buffer (waits under back-pressure). */
  write(data: Uint8Array): Promise<void> {
    const connection = this.connection;
    if (connection.error !== null) return Promise.reject(connection.error);
    if (this.endRequested || !connection.canSend) return Promise.reject(new TcpError("EPIPE", "connection is closed for writing"));
    if (this.pendingWrites.length === 0) {
      const written = connection.write(data);
      if (written === data.length) return Promise.resolve();
      return new Promise((resolve, reject) => this.pendingWrites.push({ data, offset: written, resolve, reject }));
    }
    return new Promise((resolve, reject) => this.pendingWrites.push({ data, offset: 0, resolve, reject }));
  }

  /** write() without a promise: true when all of `data` went into the send buffer now. */
  tryWrite(data: Uint8Array): boolean {
    if (this.pendingWrites.length > 0 || this.endRequested || this.connection.error !== null) return false;
    return this.connection.writeAll(data);
  }

  /** Half-close: FIN after everything written; reading continues until the peer's EOF. */
  end(): void {
    if (this.endRequested) return;
    this.endRequested = true;
    this.flushEnd();
  }

  /** Full close: FIN after everything written; further received data is discarded. */
  close(): void {
    this.discardRequested = true;
    this.end();
  }

  /** Abortive close: RST now; pending operations fail with ECONNABORTED. */
  abort(): void {
    this.connection.abort(this.sockets.now());
  }

  /** Nagle off (true) or on (false). */
  setNoDelay(noDelay = true): void {
    this.connection.noDelay = noDelay;
    if (noDelay) this.sockets.stack.markDirty(this.connection);
  }

  /** Keep-alive on/off; `idle` ms before the first probe (default from the stack config). */
  setKeepAlive(enabled: boolean, idle?: number): void {
    this.connection.setKeepAlive(enabled, this.sockets.now(), idle);
  }

  /** @internal used by TcpSockets.connect */
  waitConnected(): Promise<TcpSocket> {
    return new Promise((resolve, reject) => { this.connectWaiter = { resolve, reject }; });
  }

  private flushEnd(): void {
    if (!this.endRequested || this.pendingWrites.length > 0) return;
    if (this.discardRequested) this.connection.close();
    else this.connection.shutdownSend();
  }

  // TcpConnectionEvents (called inside input()/poll()).

  onEstablished(): void {
    const waiter = this.connectWaiter;
    this.connectWaiter = null;
    waiter?.resolve(this);
  }

  onReadable(): void {
    const resolve = this.readResolve;
    if (resolve === null) return;
    const connection = this.connection;
    if (connection.readTargetCount > 0) {
      // The connection copied the bytes straight into this read's target.
      this.readResolve = this.readReject = null;
      this.readTarget = null;
      (resolve as (count: number) => void)(connection.takeDirect());
      return;
    }
    if (connection.readableLength > 0 || connection.atEndOfStream) {
      this.readResolve = this.readReject = null;
      connection.readTarget = null;
      this.deliver(resolve);
    }
  }

  /** Settles a read with what is buffered, its kind's way: a chunk or a count; null or 0 when nothing is (end of stream). */
  private deliver(resolve: ((data: Uint8Array | null) => void) | ((count: number) => void)): void {
    const connection = this.connection;
    const target = this.readTarget;
    if (target === null) {
      (resolve as (data: Uint8Array | null) => void)(connection.readableLength > 0 ? connection.read() : null);
    } else {
      this.readTarget = null;
      (resolve as (count: number) => void)(connection.readInto(target, this.readOffset));
    }
  }

  onWritable(): void {
    // The usual case, every ACK of new data: nothing waits for room and no end is pending.
    if (this.pendingWrites.length === 0 && !this.endRequested) return;
    const connection = this.connection;
    while (this.pendingWrites.length > 0) {
      const head = this.pendingWrites[0]!;
      head.offset += connection.write(head.data, head.offset);
      if (head.offset < head.data.length) return;
      this.pendingWrites.shift();
      head.resolve();
    }
    this.flushEnd();
  }

  onClosed(error: TcpError | null): void {
    const waiter = this.connectWaiter;
    this.connectWaiter = null;
    waiter?.reject(error ?? new TcpError("ECONNABORTED", "connection closed before it was established"));
    const resolve = this.readResolve, reject = this.readReject;
    if (resolve !== null && reject !== null && (error !== null || this.connection.state === TcpState.Closed || this.connection.atEndOfStream)) {
      this.readResolve = this.readReject = null;
      this.connection.readTarget = null;
      if (this.connection.readableLength > 0 || error === null) this.deliver(resolve);
      else {
        this.readTarget = null;
        this.onReadFailure?.();
        reject(error);
      }
    }
    const writeError = error ?? new TcpError("EPIPE", "connection closed");
    for (const write of this.pendingWrites.splice(0)) write.reject(writeError);
  }
}

/** A listening port; accept() yields established connections. */
export class TcpServer {
  private readonly waiters: { resolve: (socket: TcpSocket) => void; reject: (error: TcpError) => void }[] = [];

  constructor(private readonly sockets: TcpSockets, private readonly listener: TcpListener) {
    listener.onAcceptable = () => this.deliver();
  }

  get port(): number { return this.listener.port; }

  /** The next established connection (FIFO). Rejects with ECONNABORTED after close(). */
  accept(): Promise<TcpSocket> {
    if (this.listener.closed) return Promise.reject(new TcpError("ECONNABORTED", "listener closed"));
    const ready = this.listener.accept();
    if (ready !== null) return Promise.resolve(new TcpSocket(this.sockets, ready));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Stops listening; connections not yet accepted are reset. */
  close(): void {
    this.sockets.stack.closeListener(this.listener, this.sockets.now());
    const error = new TcpError("ECONNABORTED", "listener closed");
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
  }

  private deliver(): void {
    while (this.waiters.length > 0) {
      const connection = this.listener.accept();
      if (connection === null) return;
      this.waiters.shift()!.resolve(new TcpSocket(this.sockets, connection));
    }
  }
}

/** The TCP entry points for apps: listen() and connect(). */
export class TcpSockets {
  constructor(readonly stack: TcpStack, readonly now: () => number) {}

  /** Listens on `port` with an accept backlog (default 128). Throws EADDRINUSE. */
  listen(port: number, options: { backlog?: number } = {}): TcpServer {
    return new TcpServer(this, this.stack.listen(port, options.backlog ?? 128));
  }

  /** Connects to address:port; rejects with ECONNREFUSED or ETIMEDOUT. */
  connect(address: number, port: number): Promise<TcpSocket> {
    const socket = new TcpSocket(this, this.stack.connect(address, port, this.now()));
    return socket.waitConnected();
  }
}
