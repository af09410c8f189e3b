/**
 * The scheduler of one core: timers, device pollers and keep-alive accounting, driven by
 * the C event loop through `turn()` (the LoopHooks contract in kernel/native.d.ts).
 *
 * Policy, in the order a turn applies it:
 *
 * 1. Timers. A *batch* starts when a turn finds no batch in progress: it samples hw.now()
 *    once and remembers the next creation sequence number. Only timers due at that instant
 *    and created before it belong to the batch, so a timer created (or an interval re-armed)
 *    by a callback never fires in the same batch. Timers with equal deadlines fire in
 *    creation order (a binary min-heap keyed on (deadline, sequence)).
 *    Each turn fires at most ONE timer and then returns 0 ("run again at once"): the C loop
 *    drains the microtask queue before the next turn, so promise callbacks queued by one
 *    timer run before the next timer, as in Node >= 11.
 * 2. Interrupts and pollers. When the batch is exhausted, the handler of every interrupt
 *    line that fired since the last pass runs (drivers acknowledge their device there), then
 *    every registered poller runs once with the interrupt vectors that fired. A pass after an
 *    idle one with no JavaScript in between is *quiet*: pollers may skip work that only
 *    JavaScript can create (addPoller), which makes spinning while idle cheap.
 * 3. What next:
 *    - some poller did work (returned anything but `false`), or an interrupt fired
 *                                     -> return now: poll again at once (busy polling);
 *    - every poller has been idle for less than the spin period (`setIdleSpin`, default
 *      SPIN_MS_DEFAULT), or, the first time, for START_SPIN_MS more
 *                                     -> return now: keep spinning, work may be close;
 *    - idle for the whole spin period and every poller has an `onIdle` -> call each
 *      `onIdle` (the driver arms its device interrupt, then re-checks for work it raced
 *      with); if none found work the core halts until an interrupt or the next timer.
 *      Halting and waking cost about a millisecond each on this machine's /dev/kvm, hence
 *      the spin. A poller without `onIdle` keeps the core busy-polling forever;
 *    - a ref'd timer pending          -> return the earliest deadline;
 *    - only keep-alive holds          -> return -1 (halt until an interrupt);
 *    - nothing ref'd                  -> return -2 (power off, code 0), even if unref'd
 *      timers remain (Node's Timeout.unref()).
 *
 * Hence a turn returns a wait (>= now, or -1) or an exit (-2) only when it ran no JavaScript
 * callback, so no microtask can be pending when the C loop acts on that answer.
 *
 * An exception thrown by a timer callback or a poller propagates out of turn(): the runtime
 * reports it as uncaught and exits 1, like Node.
 */
import { hw } from "../hw.ts";

/** Node's TIMEOUT_MAX: larger (or invalid) delays become 1 ms, as in Node. */
const TIMEOUT_MAX = 2 ** 31 - 1;

/** turn() result: run the next turn at once (any deadline in the past). */
export const TURN_AGAIN = 0;
/** turn() result: nothing with a deadline; halt until an interrupt. */
export const TURN_WAIT_INTERRUPT = -1;
/** turn() result: nothing keeps the VM alive; power off with code 0. */
export const TURN_EXIT = -2;

type TimerCallback = (...args: unknown[]) => void;

/** A pending setTimeout/setInterval, shaped like Node's Timeout. */
export class Timeout {
  /** Numeric id, what `+timeout` and clearTimeout(number) use. */
  readonly id: number;
  /** Absolute deadline on the hw.now() clock (ms). */
  deadline = 0;
  /** Creation order; re-armed intervals and refresh() take a new one. */
  seq = 0;
  /** Position in the heap, -1 when not scheduled. */
  heapIndex = -1;
  callback: TimerCallback;
  args: unknown[] | undefined;
  /** Delay in ms; for intervals also the period. */
  delay: number;
  repeat: boolean;
  /** Scheduled, or an interval whose callback is running and was not cleared. */
  active = false;
  private refed = true;

  constructor(id: number, callback: TimerCallback, delay: number, args: unknown[] | undefined, repeat: boolean) {
    this.id = id;
    this.callback = callback;
    this.delay = delay;
    this.args = args;
    this.repeat = repeat;
  }

  /** Lets this timer keep the VM alive again (the default). */
  ref(): this {
    if (!this.refed) {
      this.refed = true;
      if (this.heapIndex >= 0) refedTimers++;
    }
    return this;
  }

  /** Stops this timer from keeping the VM alive; it still fires if something else does. */
  unref(): this {
    if (this.refed) {
      this.refed = false;
      if (this.heapIndex >= 0) refedTimers--;
    }
    return this;
  }

  /** True when this timer keeps the VM alive. */
  hasRef(): boolean {
    return this.refed;
  }

  /** Restarts the countdown from now with the same delay and callback. */
  refresh(): this {
    if (this.heapIndex >= 0) heapRemove(this);
    schedule(this, hw.now() + this.delay);
    return this;
  }

  /** Cancels the timer (same as clearTimeout(this)). */
  close(): this {
    cancel(this);
    return this;
  }

  [Symbol.toPrimitive](): number {
    knownById.set(this.id, this);
    return this.id;
  }
}

// ---- state ---------------------------------------------------------------------------

const heap: Timeout[] = [];
/** Timers reachable through a numeric id (only those whose id was read, like Node). */
const knownById = new Map<number, Timeout>();
let nextId = 1;
let nextSeq = 1;
/** Scheduled timers that keep the VM alive. */
let refedTimers = 0;
/** Holds taken through keepAlive() by other kernel units (e.g. a listening socket). */
let keepAliveHolds = 0;
interface Poller {
  poll: (firedVectors: number, now: number, quiet: boolean) => unknown;
  onIdle: (() => boolean) | undefined;
}
/** Never modified in place: adding or removing a poller replaces the array, so a turn walks
 *  the one it started with, and sees a change by comparing references, without a copy. */
let pollers: readonly Poller[] = [];
let pendingVectors = 0;
/** Handlers of interrupt lines 1..31 (vector 32+line); line 0 is the LAPIC timer. */
const lineHandlers: ((() => void) | undefined)[] = new Array(32).fill(undefined);

/** Default spin period (ms) before idle pollers let the core halt. */
export const SPIN_MS_DEFAULT = 2;
let spinMs = SPIN_MS_DEFAULT;
/**
 * The core's first halt comes this much (ms) later than the spin period says: a service's
 * first client usually comes right after it starts listening (the request the VM was started
 * for, an orchestrator's probe), and a halt then would add a wake-up (about a millisecond
 * here) to that first answer. setIdleSpin() gives up this start-up window.
 */
export const START_SPIN_MS = 50;
/** hw.now() until which idle pollers keep spinning (set when the core would first halt); -1 before. */
let startSpinUntil = -1;
/** hw.now() when every poller was first seen idle, or -1 while there is work. */
let idleSince = -1;
/**
 * The last pass found every poller idle and no JavaScript has run since: no timer, no
 * interrupt handler, no onIdle, no microtask (the C loop says), no poller added or removed.
 * The next pass is then *quiet* (see addPoller).
 */
let lastPassIdle = false;
let halts = 0;
let interruptsHandled = 0;
let turns = 0;
/** Time from passes that found nothing to do to the next pass (spinning or halted), in ms. */
let idleMs = 0;
/** When the last pass found nothing to do, or -1. */
let idleAt = -1;

let batchActive = false;
let batchNow = 0;
let batchSeqLimit = 0;

// ---- heap ----------------------------------------------------------------------------

function before(a: Timeout, b: Timeout): boolean {
  return a.deadline < b.deadline || (a.deadline === b.deadline && a.seq < b.seq);
}

function siftUp(i: number): void {
  const t = heap[i]!;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    const p = heap[parent]!;
    if (!before(t, p)) break;
    heap[i] = p;
    p.heapIndex = i;
    i = parent;
  }
  heap[i] = t;
  t.heapIndex = i;
}

function siftDown(i: number): void {
  const n = heap.length;
  const t = heap[i]!;
  for (;;) {
    const left = 2 * i + 1;
    if (left >= n) break;
    const right = left + 1;
    const child = right < n && before(heap[right]!, heap[left]!) ? right : left;
    const c = heap[child]!;
    if (!before(c, t)) break;
    heap[i] = c;
    c.heapIndex = i;
    i = child;
  }
  heap[i] = t;
  t.heapIndex = i;
}

function heapRemove(t: Timeout): void {
  const i = t.heapIndex;
  const last = heap.pop()!;
  t.heapIndex = -1;
  if (t.hasRef()) refedTimers--;
  if (last !== t) {
    heap[i] = last;
    last.heapIndex = i;
    if (i > 0 && before(last, heap[(i - 1) >> 1]!)) siftUp(i);
    else siftDown(i);
  }
}

function schedule(t: Timeout, deadline: number): void {
  t.deadline = deadline;
  t.seq = nextSeq++;
  t.active = true;
  heap.push(t);
  if (t.hasRef()) refedTimers++;
  siftUp(heap.length - 1);
}

function cancel(t: Timeout): void {
  t.active = false;
  if (t.heapIndex >= 0) heapRemove(t);
  knownById.delete(t.id);
}

function normalizeDelay(delay: unknown): number {
  const ms = Number(delay);
  return ms >= 1 && ms <= TIMEOUT_MAX ? ms : 1;
}

function createTimer(callback: unknown, delay: unknown, args: unknown[], repeat: boolean): Timeout {
  if (typeof callback !== "function") {
    throw new TypeError(`The "callback" argument must be of type function. Received ${typeof callback}`);
  }
  const ms = normalizeDelay(delay);
  const t = new Timeout(nextId++, callback as TimerCallback, ms, args.length > 0 ? args : undefined, repeat);
  schedule(t, hw.now() + ms);
  return t;
}

function toTimer(handle: unknown): Timeout | undefined {
  if (handle instanceof Timeout) return handle;
  if (typeof handle === "number" || typeof handle === "string") return knownById.get(Number(handle));
  return undefined;
}

// ---- public timer API (installed as globals by init.ts) ------------------------------

/** Calls `callback(...args)` once after `delay` ms (min 1, like Node). */
export function setTimeout<A extends unknown[]>(callback: (...args: A) => void, delay?: number, ...args: A): Timeout {
  return createTimer(callback, delay, args, false);
}

/** Calls `callback(...args)` every `delay` ms (min 1) until cleared. */
export function setInterval<A extends unknown[]>(callback: (...args: A) => void, delay?: number, ...args: A): Timeout {
  return createTimer(callback, delay, args, true);
}

/** Cancels a timer from setTimeout (accepts the Timeout or its numeric id); other values are ignored. */
export function clearTimeout(handle: unknown): void {
  const t = toTimer(handle);
  if (t !== undefined) cancel(t);
}

/** Cancels a timer from setInterval (timers are interchangeable, as in Node). */
export function clearInterval(handle: unknown): void {
  clearTimeout(handle);
}

// ---- pollers and keep-alive ----------------------------------------------------------

/** Options of addPoller. */
export interface PollerOptions {
  /**
   * Called once every poller has been idle for the spin period, just before the core would
   * halt: arm the device's interrupt, then check again for work that raced with the arming.
   * Return true if work was found (the core keeps polling), false to let the core halt.
   */
  onIdle?: () => boolean;
  /** Called before the pollers registered without `first` in each pass (a protocol stack
   *  that must run before the drivers below it hand it input). */
  first?: boolean;
}

/**
 * Registers a device poller, called once per scheduler pass with the interrupt vector mask
 * (bit n = vector 32+n) that fired since the previous pass, hw.now() sampled for the pass
 * (no timer callback ran since) and whether the pass is *quiet*: the previous pass found
 * every poller idle and no JavaScript ran since (no timer, interrupt handler, microtask, or
 * poller before this one in this pass that found work). A poller whose work only JavaScript
 * or the clock can create (a network stack's queues and timers, as opposed to a device's
 * rings) may then answer from what its previous pass found. It returns `false` when it found
 * no work (it must then not have queued microtasks); anything else counts as work. While any
 * poller is registered the VM stays alive; the core halts only when every poller has been
 * idle for the spin period and has an `onIdle`. Returns the function that unregisters it.
 */
export function addPoller(poll: (firedVectors: number, now: number, quiet: boolean) => unknown, options: PollerOptions = {}): () => void {
  const entry: Poller = { poll, onIdle: options.onIdle };
  pollers = options.first === true ? [entry, ...pollers] : [...pollers, entry];
  idleSince = -1;
  lastPassIdle = false;
  return () => {
    if (pollers.includes(entry)) {
      pollers = pollers.filter((p) => p !== entry);
      lastPassIdle = false;
    }
  };
}

/**
 * Reserves an interrupt line (1..31, i.e. vector 32+line on this core) and registers its
 * handler, which runs at the start of the scheduler pass after the vector fired. Route a
 * device to it with hw.irqRoute(gsi, line, false). Throws when all 31 lines are taken.
 */
export function addInterruptHandler(handler: () => void): { line: number; remove: () => void } {
  const line = lineHandlers.indexOf(undefined, 1);
  if (line < 0) throw new Error("no free interrupt line (31 in use)");
  lineHandlers[line] = handler;
  return { line, remove: () => { if (lineHandlers[line] === handler) lineHandlers[line] = undefined; } };
}

/** Sets how long (ms) idle pollers spin before the core may halt; 0 halts at once. */
export function setIdleSpin(ms: number): void {
  if (!(ms >= 0)) throw new RangeError(`idle spin must be >= 0 ms, got ${String(ms)}`);
  spinMs = ms;
  startSpinUntil = 0; // the caller's choice from now on, start-up included
}

/**
 * Keeps the VM alive (halting until interrupts when nothing else is due), for units that
 * wait on interrupts, e.g. a listening socket. Returns the release function (idempotent).
 */
export function keepAlive(): () => void {
  keepAliveHolds++;
  let held = true;
  return () => {
    if (held) {
      held = false;
      keepAliveHolds--;
    }
  };
}

// ---- the loop hook -------------------------------------------------------------------

/**
 * One scheduler step for the C loop; see the policy at the top of this file. `ranJobs`:
 * whether microtasks ran since the previous turn (the C loop knows; other callers leave the
 * default, which never makes a pass quiet).
 */
export function turn(firedVectors: number, ranJobs = true): number {
  turns++;
  pendingVectors |= firedVectors;
  if (ranJobs) lastPassIdle = false;
  // The clock for this turn's pollers: the batch's instant when the batch starts here.
  let now = -1;
  if (!batchActive) {
    batchActive = true;
    batchNow = now = hw.now();
    batchSeqLimit = nextSeq;
  }

  const t = heap[0];
  if (t !== undefined && t.deadline <= batchNow && t.seq < batchSeqLimit) {
    heapRemove(t);
    lastPassIdle = false;
    if (!t.repeat) {
      t.active = false;
      knownById.delete(t.id);
    }
    // Called as a method (this = the Timeout, as in Node) without a native call/apply
    // frame in the stack trace.
    if (t.args === undefined) t.callback();
    else t.callback(...t.args);
    // Re-arm an interval unless its callback cleared it or refreshed it.
    if (t.active && t.heapIndex < 0) schedule(t, Math.max(batchNow + t.delay, hw.now()));
    return TURN_AGAIN;
  }
  batchActive = false;

  const vectors = pendingVectors;
  pendingVectors = 0;
  if (vectors !== 0) {
    for (let line = 1; line < 32; line++) {
      const handler = lineHandlers[line];
      if (handler !== undefined && (vectors & (1 << line)) !== 0) {
        interruptsHandled++;
        handler();
      }
    }
  }
  const list = pollers;
  const n = list.length;
  if (n > 0) {
    // A batch that began in an earlier turn ran timer callbacks since its instant.
    if (now < 0) now = hw.now();
    if (idleAt >= 0) {
      idleMs += now - idleAt;
      idleAt = -1;
    }
    // A poller may unregister itself or others (`pollers` then is another array). A poller
    // that did work may have queued microtasks, so the answer is "again" even if the last
    // poller just left: a wait or an exit is only ever returned by a turn that ran no
    // JavaScript callback with effects. Indexed loops: for-of allocates an iterator.
    let busy = vectors !== 0;
    for (let i = 0; i < n; i++) if (list[i]!.poll(vectors, now, lastPassIdle && !busy) !== false) busy = true;
    if (busy || pollers !== list) {
      idleSince = -1;
      lastPassIdle = false;
      return now;
    }
    lastPassIdle = true;
    idleAt = now;
    if (idleSince < 0) idleSince = now;
    if (now - idleSince < spinMs) return now;
    for (let i = 0; i < n; i++) if (list[i]!.onIdle === undefined) return now;
    if (startSpinUntil < 0) startSpinUntil = now + START_SPIN_MS;
    if (now < startSpinUntil) return now;
    let raced = false;
    for (let i = 0; i < n; i++) if (list[i]!.onIdle!()) raced = true;
    idleSince = -1;
    lastPassIdle = false;
    if (raced) return now;
    halts++;
    return heap.length > 0 ? heap[0]!.deadline : TURN_WAIT_INTERRUPT;
  }
  if (vectors !== 0) return batchNow;

  if (refedTimers > 0) return heap[0]!.deadline;
  if (keepAliveHolds > 0) return heap.length > 0 ? heap[0]!.deadline : TURN_WAIT_INTERRUPT;
  // Like Node's 'beforeExit': hooks may start more work (e.g. writing back a block
  // cache); the loop goes on and they run again the next time it runs dry.
  let started = false;
  for (const hook of beforeExitHooks.slice()) if (hook()) started = true;
  return started ? TURN_AGAIN : TURN_EXIT;
}

const beforeExitHooks: (() => boolean)[] = [];

/**
 * Registers a hook run each time the event loop is about to run dry, before the VM powers
 * off with code 0 (kernel units flush caches here). The hook returns true when it started
 * work (the loop then goes on), false when it had nothing to do; it must not start work
 * forever. Returns the function that removes it.
 */
export function onBeforeExit(hook: () => boolean): () => void {
  beforeExitHooks.push(hook);
  return () => {
    const i = beforeExitHooks.indexOf(hook);
    if (i >= 0) beforeExitHooks.splice(i, 1);
  };
}

/** Counters for tests and diagnostics. */
export function schedulerStats(): { timers: number; refedTimers: number; pollers: number; keepAliveHolds: number } {
  return { timers: heap.length, refedTimers, pollers: pollers.length, keepAliveHolds };
}

/** Idle-policy counters: halts taken because every poller was idle, interrupt handlers run, turns (event-loop passes). */
export function idleStats(): { halts: number; interruptsHandled: number; spinMs: number; turns: number; idleMs: number } {
  return { halts, interruptsHandled, spinMs, turns, idleMs };
}
