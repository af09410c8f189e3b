/**
 * What every virtio driver shares: its transport, its queues, the interrupt line, the
 * poller that runs while requests are in flight, and the broken state.
 *
 * Poll policy (kernel/process/scheduler.ts): while a driver has work in flight its poller
 * reads the used rings in memory every scheduler pass (no register reads). When every
 * poller has been idle for the scheduler's spin period, onIdle() arms the queues'
 * interrupts, clears the device's InterruptStatus (QEMU keeps its line high while that is
 * non-zero, and the IOAPIC route is edge-triggered, so a stale status would swallow the
 * next edge) and re-checks the rings; then the core halts. The interrupt handler
 * acknowledges the device and disarms the queues; the poller then finds the work.
 * Spurious and shared interrupts cost one acknowledge and nothing else.
 *
 * A driver built for a queue pair of a multiqueue NIC on a core that does not own the
 * device (`remote`) never touches the device's registers but QueueNotify: it has no
 * interrupt of its own. Before its core halts it arms its queues and marks the core as
 * sleeping (hw.coreArmWake); the owner's interrupt handler then wakes it with an IPI
 * (onInterruptTaken, hw.coreWake).
 */
import { hw } from "../../hw.ts";
import { addInterruptHandler, addPoller } from "../../process/scheduler.ts";
import { INTERRUPT_CONFIG_CHANGE, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, hex, type VirtioMmioTransport } from "./mmio.ts";
import { Virtqueue, type VirtqueueError } from "./virtqueue.ts";

/** Raised for a device the driver gave up on (protocol violation, failed set-up). */
export class DeviceError extends Error {
  override name = "DeviceError";
}

/** Base class of the virtio drivers. */
export abstract class VirtioDriver {
  readonly transport: VirtioMmioTransport;
  /** "virtio-blk@0xfeb00e00". */
  readonly name: string;
  /** Non-null once the device is unusable; every later request rejects with it. */
  broken: Error | null = null;
  /** The interrupt line (1..31) the device's interrupt comes in on, or -1 (then the driver only polls). */
  interruptLine = -1;
  /** Wake-ups through this device's interrupt. */
  interrupts = 0;
  protected readonly queues: Virtqueue<number>[] = [];
  private removePoller: (() => void) | null = null;
  /** The poller: one call per scheduler pass, which is all an idle pass costs beyond reading the used indexes. */
  private readonly pollFn = (): boolean => {
    let used = false;
    const queues = this.queues;
    for (let i = 0; i < queues.length && !used; i++) used = queues[i]!.hasUsed();
    const did = this.broken === null && (used ? this.service() : !this.idleDone && this.idleWork());
    if (this.broken !== null || !this.busy()) {
      this.removePoller?.();
      this.removePoller = null;
    }
    return did;
  };
  private readonly idleFn = (): boolean => this.armInterrupts();
  /** The handler of `interruptLine`, until the device's GSI is routed to it. */
  private unroutedHandler: { remove: () => void } | null = null;

  /** A queue pair driven on a core that does not own the device (see above). */
  protected readonly remote: boolean;
  /** A remote pair may halt its core only when the owner takes an interrupt to wake it by;
   *  otherwise (a device without a routable interrupt) it keeps polling. */
  protected remoteWakeable = true;

  constructor(transport: VirtioMmioTransport, kind: string, remote = false) {
    this.transport = transport;
    this.remote = remote;
    this.name = `virtio-${kind}@${hex(transport.base)}`;
    if (transport.irq >= 0 && !remote) {
      // To this core: the driver runs on the core that owns the device. The GSI is routed
      // when the interrupt is first needed (routeInterrupt), not here: writing an IOAPIC
      // redirection entry costs ~0.3-0.6 ms of VM exits under this machine's /dev/kvm, and
      // device start-up is on every server's boot path while a busy device never halts.
      const handler = addInterruptHandler(() => this.onInterrupt());
      this.interruptLine = handler.line;
      this.unroutedHandler = handler;
    }
  }

  /**
   * Routes the device's GSI to `interruptLine` (once). A GSI that no IOAPIC serves leaves the
   * device polled only: the line is given back, `interruptLine` becomes -1 and the poller is
   * registered again without the idle hook (so the core never halts waiting for it). Returns
   * whether the device can interrupt.
   */
  protected routeInterrupt(): boolean {
    const handler = this.unroutedHandler;
    if (handler === null) return this.interruptLine >= 0;
    this.unroutedHandler = null;
    try {
      hw.irqRoute(this.transport.irq, this.interruptLine, false);
      return true;
    } catch {
      handler.remove();
      this.interruptLine = -1;
      if (this.removePoller !== null) {
        this.removePoller();
        this.removePoller = null;
        this.startPolling();
      }
      return false;
    }
  }

  /** Whether the start-up work of idle passes (idleWork) is done. */
  private idleDone = false;

  /**
   * Start-up work left for the first passes that find the device idle, off the boot path (a
   * server's first client is still on its way then): the subclass's deferredStart(). Returns
   * true while work remains: the pass then counts as busy. (The interrupt is still routed at
   * the first halt, not here: routing earlier lets the core halt ~0.4 ms sooner after start-up,
   * and a first client arriving in that window then pays a wake-up of about a millisecond.)
   */
  private idleWork(): boolean {
    if (this.deferredStart()) return true;
    this.idleDone = true;
    return false;
  }

  /** A subclass's start-up work for idle passes: does a bounded part; true while more remains. */
  protected deferredStart(): boolean {
    return false;
  }

  /** Negotiates `wanted` plus the ring features this file supports (§3.1.1 steps 1-6). */
  protected negotiate(wanted: readonly number[], requires: readonly (readonly [number, readonly number[]])[] = []): void {
    this.transport.negotiate([...wanted, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX], requires);
  }

  /** Creates and registers queue `index` (§3.1.1 step 7), at most `wantedSize` entries. */
  protected createQueue(index: number, wantedSize: number, maxSegments = 4,
    ring?: { buffer: ArrayBuffer; phys: number; size: number }): Virtqueue<number> {
    // A ring handed over by the owner core was set up with the device already.
    const size = ring?.size ?? this.queueSize(index, wantedSize);
    const vq = new Virtqueue<number>({
      name: `${this.name} queue ${index}`,
      size,
      indirect: this.transport.has(VIRTIO_F_INDIRECT_DESC),
      eventIdx: this.transport.has(VIRTIO_F_EVENT_IDX),
      maxSegments,
      notify: () => this.transport.notify(index),
      onBroken: (error) => this.fail(error),
      ...(ring !== undefined ? { ring } : {}),
    });
    if (ring === undefined) this.transport.setupQueue(index, size, vq.addresses);
    this.queues.push(vq);
    return vq;
  }

  /** The size queue `index` gets: the largest power of two up to `wantedSize` the device allows. */
  protected queueSize(index: number, wantedSize: number): number {
    const max = this.transport.queueMaxSize(index);
    if (max === 0) throw new DeviceError(`${this.name}: queue ${index} does not exist`);
    let size = 1;
    while (size * 2 <= Math.min(max, wantedSize)) size *= 2;
    return size;
  }

  /** Called after the device's interrupt was acknowledged (the owner of a multiqueue NIC wakes the other cores here). */
  protected onInterruptTaken(): void {}

  /** QueueNotify writes so far over all queues. */
  notifications(): number {
    let n = 0;
    for (const vq of this.queues) n += vq.notifications;
    return n;
  }

  /**
   * Polls the driver's queues once; returns whether anything completed. Called only when
   * some queue has used buffers (an idle scheduler pass skips it): consuming them must be
   * the only work it does.
   */
  protected abstract service(): boolean;

  /** Whether the driver still waits for the device (keeps its poller registered). */
  protected abstract busy(): boolean;

  /** Rejects everything pending with `error` (the device is now broken). */
  protected abstract rejectAll(error: Error): void;

  /** Called when the device signals a configuration change (§4.2.2 InterruptStatus bit 1). */
  protected onConfigChange(): void {}

  /** Makes sure the poller runs: call after submitting work. */
  protected startPolling(): void {
    if (this.removePoller === null && this.broken === null) {
      this.removePoller = addPoller(this.pollFn, this.interruptLine >= 0 || (this.remote && this.remoteWakeable) ? { onIdle: this.idleFn } : {});
    }
  }

  private armInterrupts(): boolean {
    // Polled only from now on (no routable GSI): "pending" keeps the core from halting now.
    if (!this.remote && !this.routeInterrupt()) return true;
    let pending = false;
    for (const vq of this.queues) if (vq.enableInterrupts()) pending = true;
    // Clear a stale InterruptStatus so the next used buffer makes a fresh edge. A remote
    // queue pair instead tells the owner core (whose interrupt it is) to wake this one.
    if (this.remote) {
      if (hw.coreArmWake()) pending = true;
    } else {
      this.ack();
    }
    for (const vq of this.queues) if (vq.hasUsed()) pending = true;
    if (pending) for (const vq of this.queues) vq.disableInterrupts();
    return pending;
  }

  private ack(): void {
    const status = this.transport.acknowledgeInterrupt();
    if ((status & INTERRUPT_CONFIG_CHANGE) !== 0) this.onConfigChange();
  }

  private onInterrupt(): void {
    this.interrupts++;
    if (this.broken !== null) return;
    this.ack();
    for (const vq of this.queues) vq.disableInterrupts();
    this.onInterruptTaken();
  }

  /** Gives up on the device: marks it broken, tells it (FAILED), rejects what is pending. */
  fail(error: Error | VirtqueueError | string): void {
    if (this.broken !== null) return;
    const e = typeof error === "string" ? new DeviceError(`${this.name}: ${error}`) : error;
    this.broken = e;
    this.transport.fail();
    for (const vq of this.queues) {
      vq.fail(e.message);
      vq.takeOutstanding();
    }
    this.rejectAll(e);
  }
}
