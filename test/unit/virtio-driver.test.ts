// The virtio driver base class and the scheduler's idle path: a device's interrupt is routed
// to the core when the core first wants to halt (not at start-up, where an IOAPIC write costs
// ~0.3-0.6 ms of VM exits here), and a GSI no IOAPIC serves leaves the device polled only.
import assert from "node:assert/strict";
import { test } from "node:test";
import { installNativeForTests } from "../../kernel/hw.ts";
import { setIdleSpin, turn, TURN_WAIT_INTERRUPT } from "../../kernel/process/scheduler.ts";
import { VirtioDriver } from "../../kernel/devices/virtio/driver.ts";
import type { VirtioMmioTransport } from "../../kernel/devices/virtio/mmio.ts";

const routes: [number, number][] = [];
let clock = 1000;
installNativeForTests({
  now: () => clock,
  fence: () => {},
  irqRoute: (gsi: number, line: number) => {
    if (gsi >= 24) throw new RangeError(`bad interrupt route gsi ${gsi} line ${line}`);
    routes.push([gsi, line]);
  },
});
setIdleSpin(0);

/** A transport with no registers behind it: only what the base class touches. */
function transport(irq: number): VirtioMmioTransport {
  return { base: 0xfeb00e00, irq, has: () => false, acknowledgeInterrupt: () => 0, fail: () => {} } as unknown as VirtioMmioTransport;
}

/** A driver with work in flight and no queues: its poller stays registered and idle. */
class IdleDriver extends VirtioDriver {
  constructor(irq: number) {
    super(transport(irq), "test");
    this.startPolling();
  }
  protected service(): boolean { return false; }
  protected busy(): boolean { return true; }
  protected rejectAll(): void {}
}

/** Turns until the scheduler says halt (or gives up): the C loop between interrupts. */
function idleTurns(n: number): number[] {
  const results: number[] = [];
  for (let i = 0; i < n; i++) {
    clock += 1;
    results.push(turn(0, false));
  }
  return results;
}

test("the GSI is routed at the first halt, once, not when the driver starts", () => {
  const driver = new IdleDriver(12);
  assert.deepEqual(routes, []);
  assert.ok(driver.interruptLine > 0);
  const results = idleTurns(4);
  assert.ok(results.includes(TURN_WAIT_INTERRUPT), `the core halts: ${results}`);
  assert.deepEqual(routes, [[12, driver.interruptLine]]);
  idleTurns(4);
  assert.equal(routes.length, 1);
  driver.fail("done"); // unregisters its poller for the next test
  idleTurns(2);
});

test("a GSI no IOAPIC serves: the line is given back and the core keeps polling instead of halting", () => {
  routes.length = 0;
  const driver = new IdleDriver(99);
  const results = idleTurns(6);
  assert.equal(driver.interruptLine, -1);
  assert.ok(!results.includes(TURN_WAIT_INTERRUPT), `never halts without an interrupt to wake it: ${results}`);
  assert.deepEqual(routes, []);
  driver.fail("done");
});
