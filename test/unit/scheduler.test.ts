import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import { installNativeForTests } from "../../kernel/hw.ts";
import {
  addInterruptHandler, addPoller, clearInterval, idleStats, setIdleSpin, SPIN_MS_DEFAULT, START_SPIN_MS, clearTimeout, keepAlive, schedulerStats, setInterval, setTimeout, turn,
  TURN_EXIT, TURN_WAIT_INTERRUPT,
} from "../../kernel/process/scheduler.ts";

let clock = 1000;
installNativeForTests({ now: () => clock });

/** Lets Node run every pending microtask (what the C loop does between turns). */
function drainMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Plays the C loop: drain, turn, then "idle" by moving the fake clock to the deadline. */
async function runLoop(maxTurns = 1000): Promise<number> {
  for (let i = 0; i < maxTurns; i++) {
    await drainMicrotasks();
    const next = turn(0);
    await drainMicrotasks();
    if (next === TURN_EXIT || next === TURN_WAIT_INTERRUPT) return next;
    if (next > clock) clock = next;
    else if (next === clock) clock += 0.5; // busy polling: time passes between turns
  }
  throw new Error("loop did not settle");
}

beforeEach(() => {
  assert.deepEqual(schedulerStats(), { timers: 0, refedTimers: 0, pollers: 0, keepAliveHolds: 0 }, "a previous test leaked");
});

test("timers with equal deadlines fire in creation order, earlier deadlines first", async () => {
  const log: string[] = [];
  setTimeout(() => log.push("c"), 20);
  setTimeout(() => log.push("a1"), 10);
  setTimeout(() => log.push("a2"), 10);
  setTimeout(() => log.push("b"), 15);
  setTimeout(() => log.push("a3"), 10);
  assert.equal(await runLoop(), TURN_EXIT);
  assert.deepEqual(log, ["a1", "a2", "a3", "b", "c"]);
});

test("microtasks queued by a timer run before the next timer (Node >= 11)", async () => {
  const log: string[] = [];
  setTimeout(() => {
    log.push("t1");
    void Promise.resolve().then(() => log.push("micro"));
  }, 1);
  setTimeout(() => log.push("t2"), 1);
  await runLoop();
  assert.deepEqual(log, ["t1", "micro", "t2"]);
});

test("a timer created inside a callback never fires in the same pass", async () => {
  const log: string[] = [];
  const stop = addPoller(() => log.push("poll"));
  setTimeout(() => {
    log.push("a");
    clock += 50; // the callback is slow: the new timer is already due when it returns
    setTimeout(() => {
      log.push("c");
      stop();
    }, 1);
  }, 5);
  setTimeout(() => log.push("b"), 5);
  clock += 5;
  await runLoop();
  const a = log.indexOf("a");
  assert.deepEqual(log.slice(a, a + 3), ["a", "b", "poll"]);
  assert.equal(log.at(-1), "c");
});

test("arguments are passed and `this` is the Timeout, like Node", async () => {
  let seen: unknown[] = [];
  let self: unknown;
  const t = setTimeout(function (this: unknown, x: number, y: string) {
    seen = [x, y];
    self = this;
  }, 1, 7, "z");
  await runLoop();
  assert.deepEqual(seen, [7, "z"]);
  assert.equal(self, t);
});

test("setInterval repeats until cleared from its own callback", async () => {
  let n = 0;
  const start = clock;
  const iv = setInterval(() => {
    n++;
    if (n === 3) clearInterval(iv);
  }, 10);
  assert.equal(await runLoop(), TURN_EXIT);
  assert.equal(n, 3);
  assert.equal(clock - start, 30);
});

test("clearTimeout accepts the Timeout or its numeric id, and ignores junk", async () => {
  let fired = 0;
  const a = setTimeout(() => fired++, 5);
  const b = setTimeout(() => fired++, 5);
  setTimeout(() => fired++, 5);
  clearTimeout(a);
  clearTimeout(+b);
  clearTimeout(undefined);
  clearTimeout({});
  clearTimeout(999999);
  await runLoop();
  assert.equal(fired, 1);
});

test("invalid delays become 1 ms and a non-function callback throws", async () => {
  const start = clock;
  let at = 0;
  setTimeout(() => (at = clock), -5);
  setTimeout(() => undefined, Number.NaN);
  await runLoop();
  assert.equal(at - start, 1);
  assert.throws(() => setTimeout("code" as unknown as () => void, 1), TypeError);
});

test("an unref'd timer does not keep the VM alive; ref() restores it", async () => {
  let fired = false;
  const t = setTimeout(() => (fired = true), 100).unref();
  assert.equal(t.hasRef(), false);
  assert.equal(turn(0), TURN_EXIT);
  t.ref();
  assert.equal(turn(0), clock + 100);
  await runLoop();
  assert.equal(fired, true);
});

test("an unref'd timer still fires while something else keeps the VM alive", async () => {
  const log: string[] = [];
  setTimeout(() => log.push("unref"), 5).unref();
  setTimeout(() => log.push("ref"), 10);
  await runLoop();
  assert.deepEqual(log, ["unref", "ref"]);
});

test("refresh() restarts the countdown", async () => {
  const start = clock;
  let at = 0;
  const t = setTimeout(() => (at = clock), 10);
  clock += 8;
  t.refresh();
  await runLoop();
  assert.equal(at - start, 18);
});

test("pollers get the fired vectors, keep polling at once, and unsubscribe", async () => {
  const masks: number[] = [];
  const stop = addPoller((mask) => masks.push(mask));
  assert.equal(turn(0b101), clock); // "poll again now"
  assert.equal(turn(0), clock);
  stop();
  stop(); // idempotent
  assert.equal(turn(0), TURN_EXIT);
  assert.deepEqual(masks, [0b101, 0]);
});

test("a poller that leaves still gets one more turn, for the microtasks it queued", async () => {
  const log: string[] = [];
  const stop = addPoller(() => {
    stop();
    void Promise.resolve().then(() => setTimeout(() => log.push("late timer"), 5));
  });
  assert.equal(turn(0), clock, "not an exit: microtasks may be pending");
  assert.equal(await runLoop(), TURN_EXIT);
  assert.deepEqual(log, ["late timer"]);
});

test("a pass is quiet only after an idle pass with no JavaScript since", () => {
  const quiet: boolean[] = [];
  let work = false;
  const stopDevice = addPoller(() => work);
  const stop = addPoller((_mask, _now, q) => quiet.push(q) && false);
  turn(0, false); // the pollers were just added
  turn(0, false); // quiet
  turn(0, true); // microtasks ran
  turn(0, false);
  turn(0); // a caller that does not know: never quiet
  turn(0, false);
  work = true;
  turn(0, false); // the first poller found work: the second is not quiet
  work = false;
  turn(0, false); // nor the pass after one with work
  turn(0, false);
  turn(1 << 5, false); // an interrupt fired
  turn(0, false); // nor the pass after it
  const t = setTimeout(() => undefined, 1);
  clock += 1;
  turn(0, false); // the timer fires (no poll)
  turn(0, false); // the pass after a timer
  turn(0, false);
  clearTimeout(t);
  assert.deepEqual(quiet, [false, true, false, true, false, true, false, false, true, false, false, false, true]);
  stop();
  stopDevice();
  turn(0);
});

test("keepAlive holds the VM in an interrupt wait until released", () => {
  const release = keepAlive();
  assert.equal(turn(0), TURN_WAIT_INTERRUPT);
  const t = setTimeout(() => undefined, 50).unref();
  assert.equal(turn(0), clock + 50, "an unref'd timer still bounds the wait");
  clearTimeout(t);
  release();
  release();
  assert.equal(turn(0), TURN_EXIT);
});

test("an exception from a timer callback propagates out of turn()", async () => {
  setTimeout(() => {
    throw new RangeError("boom");
  }, 1);
  clock += 1;
  assert.throws(() => turn(0), RangeError);
  assert.equal(await runLoop(), TURN_EXIT);
});

test("many timers: the heap keeps order through cancellations", async () => {
  const log: number[] = [];
  const timers = [];
  let seed = 42;
  const random = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let i = 0; i < 500; i++) {
    const delay = 1 + Math.floor(random() * 50);
    timers.push({ i, delay, t: setTimeout(() => log.push(i), delay) });
  }
  const cancelled = new Set<number>();
  for (const { i, t } of timers) {
    if (random() < 0.3) {
      clearTimeout(t);
      cancelled.add(i);
    }
  }
  await runLoop(5000);
  const expected = timers
    .filter(({ i }) => !cancelled.has(i))
    .sort((x, y) => x.delay - y.delay || x.i - y.i)
    .map(({ i }) => i);
  assert.deepEqual(log, expected);
});

test("the core's first halt comes START_SPIN_MS after the spin period (start-up), later ones after the spin period alone", () => {
  let armed = 0;
  const stop = addPoller(() => false, { onIdle: () => (armed++, false) });
  assert.equal(turn(0), clock, "first idle pass: keep spinning");
  clock += SPIN_MS_DEFAULT + 0.5;
  assert.equal(turn(0), clock, "the spin period is over, but not the start-up window");
  clock += START_SPIN_MS - 1;
  assert.equal(turn(0), clock, "still within the start-up window");
  assert.equal(armed, 0);
  clock += 1;
  assert.equal(turn(0), TURN_WAIT_INTERRUPT, "the first halt");
  assert.equal(armed, 1);
  clock += 10;
  assert.equal(turn(0), clock, "idle again: spinning");
  clock += SPIN_MS_DEFAULT + 0.5;
  assert.equal(turn(0), TURN_WAIT_INTERRUPT, "after the spin period alone from now on");
  assert.equal(armed, 2);
  stop();
  turn(0);
});

test("idle pollers spin for the spin period, arm interrupts through onIdle, then the core halts", () => {
  setIdleSpin(2);
  let armed = 0;
  const stop = addPoller(() => false, { onIdle: () => (armed++, false) });
  const start = clock;
  assert.equal(turn(0), clock, "first idle pass: keep spinning");
  clock += 1;
  assert.equal(turn(0), clock, "still within the spin period");
  assert.equal(armed, 0);
  clock += 1.5;
  assert.equal(turn(0), TURN_WAIT_INTERRUPT, "idle for the whole period: halt until an interrupt");
  assert.equal(armed, 1);
  assert.ok(clock - start >= 2);
  stop();
  turn(0);
});

test("onIdle that finds raced work keeps the core polling; a poller without onIdle never halts", () => {
  setIdleSpin(0);
  let raced = true;
  const stop = addPoller(() => false, { onIdle: () => raced });
  assert.equal(turn(0), clock);
  raced = false;
  assert.equal(turn(0), TURN_WAIT_INTERRUPT);
  stop();
  turn(0);
  const stop2 = addPoller(() => false);
  for (let i = 0; i < 5; i++) {
    clock += 10;
    assert.equal(turn(0), clock);
  }
  stop2();
  turn(0);
  setIdleSpin(SPIN_MS_DEFAULT);
});

test("an interrupt line's handler runs when its vector fires, before the pollers, and keeps polling", () => {
  const log: string[] = [];
  const irq = addInterruptHandler(() => log.push("irq"));
  assert.ok(irq.line >= 1 && irq.line <= 31);
  setIdleSpin(0);
  const stop = addPoller((v) => { log.push(`poll ${v === 1 << irq.line}`); return false; }, { onIdle: () => false });
  assert.equal(turn(0), TURN_WAIT_INTERRUPT);
  assert.equal(turn(1 << irq.line), clock, "woken by the device: poll again at once");
  assert.deepEqual(log, ["poll false", "irq", "poll true"]);
  assert.equal(turn(1 << 30), clock, "a spurious vector: one more poll");
  assert.equal(turn(0), TURN_WAIT_INTERRUPT, "then back to sleep");
  irq.remove();
  stop();
  turn(0);
  setIdleSpin(SPIN_MS_DEFAULT);
  assert.ok(idleStats().halts >= 3);
});

test("a poller registered with `first` runs before the others in every pass, whenever they came", () => {
  const log: string[] = [];
  const stopDriver = addPoller(() => { log.push("driver"); return false; });
  const stopStack = addPoller(() => { log.push("stack"); return false; }, { first: true });
  const stopLater = addPoller(() => { log.push("later"); return false; });
  turn(0);
  assert.deepEqual(log, ["stack", "driver", "later"]);
  stopDriver();
  stopStack();
  stopLater();
});
