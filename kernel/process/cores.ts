/**
 * Cores: one runtime per core, messages between them (issue 6).
 *
 * Model. Every core runs its own QuickJS runtime over its own memory region, and every
 * core evaluates the same image: the kernel and the app's top level run on each core, and
 * the app branches on `cores.id` (the boot core is 0). Nothing is shared between the
 * runtimes; they talk through shared-memory rings (platform/runtime/smp.c), one per ordered
 * pair of cores.
 *
 * Messages are structured-clone-like: JSON-compatible values plus ArrayBuffers, typed
 * arrays, DataViews and BigInts. ArrayBuffers listed in `transfer` move without a copy
 * (they are detached here; the receiver's buffer aliases the same memory); other buffers
 * are copied. Messages between two cores arrive in the order they were sent.
 *
 * Lifetime. The VM's life is the boot core's: it powers off when core 0's event loop runs
 * dry (or on exit() from any core).
 *
 * Failure. A core whose heap runs out stops alone (platform/runtime/main.c): it prints its
 * heap figures and halts for good, and the other cores go on serving. Sending to it then
 * throws, and calls waiting on it reject. When core 0 is the one that stopped, the VM ends
 * once every remaining core has run dry (exit code 4, as when the last core fails).
 * Messages and buffers already in its rings are lost with it. Core 0 keeps itself alive while it listens for
 * messages (`onMessage`, until the returned function is called), awaits a `run`, or has
 * messages waiting for room in a full ring. Another core never ends the VM by running dry:
 * it waits for messages; once it has used this API it polls for them (and runs exposed
 * functions) for good.
 *
 * A core polls its rings from the scheduler; when idle it sets a flag so that senders
 * wake it with an inter-processor interrupt (ring 3 writes the local APIC's ICR).
 *
 * The kernel has channels of its own over the same rings (onKernelMessage and
 * postKernelMessage, by topic): the multiqueue NIC hands queue pairs and forwards frames
 * through them. The app never sees those messages.
 */
import { hw } from "../hw.ts";
import { addPoller } from "./scheduler.ts";

/** A message from another core, shaped like a MessageEvent's useful part. */
export interface CoreMessageEvent {
  /** The message, a structured clone of what the sender posted. */
  readonly data: unknown;
  /** The core that sent it. */
  readonly from: number;
}

/** A function other cores may call on this core with `cores.run`. */
export type CoreFunction = (...args: never[]) => unknown;

function native<T>(read: () => T, fallback: T): T {
  try {
    return read();
  } catch {
    return fallback; // on Node (unit tests): one core
  }
}

const id: number = native(() => hw.coreId(), 0);
const count: number = native(() => hw.coreCount(), 1);

// ---- serialisation -----------------------------------------------------------------------

/** Marks the JSON objects that stand for buffers, views and BigInts. */
const TAG = "\u0000torito";
const VIEWS: Record<string, new (buffer: ArrayBuffer, byteOffset: number, length: number) => ArrayBufferView> = {
  Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
  Float32Array, Float64Array, BigInt64Array, BigUint64Array,
  DataView: DataView as unknown as new (b: ArrayBuffer, o: number, l: number) => ArrayBufferView,
};

interface Encoded {
  text: string;
  buffers: ArrayBuffer[];
}

/** Serialises `value` (wrapped in the envelope `head`) with `transfer` moved, others copied. */
function encode(head: unknown[], value: unknown, hasValue: boolean, transfer: readonly ArrayBuffer[]): Encoded {
  const buffers: ArrayBuffer[] = [];
  const index = new Map<ArrayBuffer, number>();
  for (const b of transfer) {
    if (!(b instanceof ArrayBuffer)) throw new TypeError("cores: only ArrayBuffers can be transferred");
    if (index.has(b)) throw new TypeError("cores: an ArrayBuffer is listed twice in the transfer list");
    if (b.byteLength === 0 && (b as { detached?: boolean }).detached === true) {
      throw new TypeError("cores: a detached ArrayBuffer cannot be transferred");
    }
    index.set(b, buffers.push(b) - 1);
  }
  const bufferIndex = (b: ArrayBuffer): number => {
    let i = index.get(b);
    if (i === undefined) {
      i = buffers.push(b.slice(0)) - 1;
      index.set(b, i);
    }
    return i;
  };
  const text = JSON.stringify(hasValue ? [...head, value] : head, (_key, v: unknown) => {
    if (typeof v === "bigint") return { [TAG]: "bigint", v: v.toString() };
    if (typeof v !== "object" || v === null) return v;
    if (v instanceof ArrayBuffer) return { [TAG]: "ab", i: bufferIndex(v) };
    if (ArrayBuffer.isView(v)) {
      const kind = v.constructor.name;
      if (!(kind in VIEWS)) throw new TypeError(`cores: cannot send a ${kind}`);
      const length = v instanceof DataView ? v.byteLength : (v as unknown as { length: number }).length;
      if (index.has(v.buffer as ArrayBuffer)) {
        return { [TAG]: "view", k: kind, i: index.get(v.buffer as ArrayBuffer), o: v.byteOffset, n: length };
      }
      const copy = (v.buffer as ArrayBuffer).slice(v.byteOffset, v.byteOffset + v.byteLength);
      return { [TAG]: "view", k: kind, i: buffers.push(copy) - 1, o: 0, n: length };
    }
    return v;
  });
  return { text, buffers };
}

function decode(text: string, buffers: ArrayBuffer[]): unknown[] {
  return JSON.parse(text, (_key, v: unknown) => {
    if (typeof v !== "object" || v === null || !(TAG in v)) return v;
    const t = v as { [TAG]: string; v: string; i: number; k: string; o: number; n: number };
    switch (t[TAG]) {
      case "bigint": return BigInt(t.v);
      case "ab": return buffers[t.i];
      case "view": return new VIEWS[t.k]!(buffers[t.i]!, t.o, t.n);
      default: return v;
    }
  }) as unknown[];
}

// ---- state -------------------------------------------------------------------------------

const listeners: ((event: CoreMessageEvent) => void)[] = [];
/** Messages that arrived while nobody listened, delivered to the first listener. */
const unheard: CoreMessageEvent[] = [];
const exposed = new Map<string, CoreFunction>();
const pendingRuns = new Map<number, { target: number; resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
/** Cores known to have stopped (bit i: core i), as of the last poll. */
let failedSeen = 0;
let nextRunId = 1;
/** Messages parked behind a full ring (the runtime keeps them, in order). */
let outboxed = 0;
let removePoller: (() => void) | undefined;
/** Kernel-internal channels (e.g. the multiqueue NIC's set-up and forwarded frames): never seen by the app. */
const kernelHandlers = new Map<string, (value: unknown, from: number) => void>();
/** Kernel messages that arrived before their channel's handler, delivered to it in order. */
const kernelUnheard: { topic: string; value: unknown; from: number }[] = [];

/** Registers or removes this core's ring poller (see "Lifetime" above). */
function updatePoller(): void {
  const wanted = count > 1 && (id !== 0 || listeners.length > 0 || pendingRuns.size > 0 || outboxed > 0 || kernelHandlers.size > 0);
  if (wanted && removePoller === undefined) {
    removePoller = addPoller(poll, { onIdle: () => outboxed > 0 || hw.coreArmWake() });
  } else if (!wanted && removePoller !== undefined) {
    removePoller();
    removePoller = undefined;
  }
}

function checkTarget(target: number): void {
  if (!Number.isInteger(target) || target < 0 || target >= count || target === id) {
    throw new RangeError(`cores: no other core ${String(target)} (this is core ${id} of ${count})`);
  }
}

function send(target: number, message: Encoded): void {
  if (hw.coreSend(target, message.text, message.buffers)) return;
  outboxed++;
  updatePoller();
}

function flushOutbox(): boolean {
  const before = outboxed;
  outboxed = hw.coreFlush();
  if (outboxed === 0) updatePoller();
  return outboxed !== before;
}

function errorInfo(e: unknown): unknown {
  if (e instanceof Error) return { name: e.name, message: e.message, stack: e.stack };
  return { name: "Error", message: String(e) };
}

function toError(info: unknown, core: number): Error {
  const i = info as { name?: string; message?: string; stack?: string };
  const e = new Error(`${i.message ?? "error"} (on core ${core})`);
  e.name = i.name ?? "Error";
  if (i.stack !== undefined) e.stack = `${e.name}: ${e.message}\n${i.stack.split("\n").filter((l) => /^\s+at /.test(l)).join("\n")}`;
  return e;
}

async function serveRun(from: number, runId: number, name: string, args: unknown[]): Promise<void> {
  let reply: Encoded;
  try {
    const fn = exposed.get(name);
    if (fn === undefined) throw new ReferenceError(`cores.run: core ${id} exposes no function '${name}'`);
    const value = await (fn as (...a: unknown[]) => unknown)(...args);
    reply = encode(["r", runId, true], value, true, []);
  } catch (e) {
    reply = encode(["r", runId, false], errorInfo(e), true, []);
  }
  send(from, reply);
}

function dispatch(from: number, text: string, buffers: ArrayBuffer[]): void {
  const m = decode(text, buffers);
  switch (m[0]) {
    case "m": {
      const event: CoreMessageEvent = { data: m[1], from };
      if (listeners.length === 0) unheard.push(event);
      for (const l of listeners.slice()) l(event);
      return;
    }
    case "k": {
      const handler = kernelHandlers.get(m[1] as string);
      if (handler === undefined) {
        // Bounded per topic: e.g. ARP copies for a core whose network unit is not running.
        const topic = m[1] as string;
        if (kernelUnheard.filter((u) => u.topic === topic).length >= 64) kernelUnheard.splice(kernelUnheard.findIndex((u) => u.topic === topic), 1);
        kernelUnheard.push({ topic: m[1] as string, value: m[2], from });
      }
      else handler(m[2], from);
      return;
    }
    case "c":
      void serveRun(from, m[1] as number, m[2] as string, m[3] as unknown[]);
      return;
    case "r": {
      const p = pendingRuns.get(m[1] as number);
      if (p === undefined) return;
      pendingRuns.delete(m[1] as number);
      if (m[2] === true) p.resolve(m[3]);
      else p.reject(toError(m[3], from));
      updatePoller();
      return;
    }
  }
}

/** At most this many messages per scheduler pass, so timers and devices keep their turn. */
const BATCH = 64;

/** Rejects the calls waiting on cores that stopped since the last look. */
function checkFailedCores(): boolean {
  const failed = hw.coresFailed();
  if (failed === failedSeen) return false;
  failedSeen = failed;
  for (const [runId, p] of pendingRuns) {
    if ((failed & (1 << p.target)) === 0) continue;
    pendingRuns.delete(runId);
    p.reject(new Error(`cores.run: core ${p.target} stopped (its heap ran out) before it answered`));
  }
  updatePoller();
  return true;
}

function poll(): boolean {
  let work = outboxed > 0 && flushOutbox();
  if (pendingRuns.size > 0 && checkFailedCores()) work = true;
  for (let n = 0; n < BATCH; n++) {
    const m = hw.coreReceive();
    if (m === null) break;
    dispatch(m[0], m[1], m[2]);
    work = true;
  }
  return work || outboxed > 0;
}

// ---- the API -------------------------------------------------------------------------------

/** Where this code runs and how to reach the other cores. */
export const cores = {
  /** This core's index: 0 is the boot core. */
  id,
  /** How many cores run this app (`torito run --cpus N`). */
  count,

  /**
   * Sends `message` to core `target`: a structured clone (JSON-compatible values,
   * ArrayBuffers, typed arrays, DataViews, BigInts). ArrayBuffers in `transfer` move
   * without a copy and are detached here, like Web Workers' postMessage.
   */
  postMessage(target: number, message: unknown, transfer: readonly ArrayBuffer[] = []): void {
    checkTarget(target);
    send(target, encode(["m"], message, true, transfer));
    updatePoller();
  },

  /**
   * Calls `listener` with every message other cores post to this one, in order per sender.
   * Messages that arrived before any listener are delivered to the first one. Returns the
   * function that removes the listener (on core 0 a listener keeps the VM alive).
   */
  onMessage(listener: (event: CoreMessageEvent) => void): () => void {
    if (typeof listener !== "function") throw new TypeError("cores.onMessage: listener must be a function");
    listeners.push(listener);
    updatePoller();
    for (const event of unheard.splice(0)) listener(event);
    return () => {
      const i = listeners.indexOf(listener);
      if (i >= 0) listeners.splice(i, 1);
      updatePoller();
    };
  },

  /**
   * Makes functions callable from other cores with `cores.run(thisCore, name, ...args)`.
   * Every core runs the app's top level, so exposing there exposes on every core.
   */
  expose(functions: Record<string, CoreFunction>): void {
    for (const [name, fn] of Object.entries(functions)) {
      if (typeof fn !== "function") throw new TypeError(`cores.expose: '${name}' is not a function`);
      exposed.set(name, fn);
    }
    updatePoller();
  },

  /**
   * Runs the function the app exposed as `name` on core `target` with (cloned) `args`, and
   * resolves with its (cloned) result, or rejects with its error, naming the core.
   */
  run(target: number, name: string, ...args: unknown[]): Promise<unknown> {
    checkTarget(target);
    const runId = nextRunId++;
    const message = encode(["c", runId, name], args, true, []);
    return new Promise((resolve, reject) => {
      pendingRuns.set(runId, { target, resolve, reject });
      send(target, message);
      updatePoller();
    });
  },
};

/**
 * KERNEL ONLY: handles messages other cores' kernels post on `topic` (postKernelMessage);
 * messages that came before are delivered now. On core 0 a handler keeps the VM alive like
 * an app listener: remove it (the returned function) when the unit it serves goes idle.
 */
export function onKernelMessage(topic: string, handler: (value: unknown, from: number) => void): () => void {
  kernelHandlers.set(topic, handler);
  updatePoller();
  for (let i = 0; i < kernelUnheard.length; i++) {
    const m = kernelUnheard[i]!;
    if (m.topic !== topic) continue;
    kernelUnheard.splice(i--, 1);
    handler(m.value, m.from);
  }
  return () => {
    if (kernelHandlers.get(topic) === handler) kernelHandlers.delete(topic);
    updatePoller();
  };
}

/** KERNEL ONLY: posts `value` on `topic` to core `target`'s kernel (same cloning and transfer rules as postMessage). */
export function postKernelMessage(target: number, topic: string, value: unknown, transfer: readonly ArrayBuffer[] = []): void {
  checkTarget(target);
  send(target, encode(["k", topic], value, true, transfer));
  updatePoller();
}
