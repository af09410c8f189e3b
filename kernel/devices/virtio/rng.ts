/**
 * virtio-rng driver (virtio 1.2 §5.4): one request queue; the driver posts writable
 * buffers and the device fills them with entropy from the host.
 *
 * readSync() exists because crypto.getRandomValues() is synchronous: it posts a buffer and
 * spins on the used ring in memory (no register reads) until the device fills it or the
 * timeout passes. It runs once, to seed the kernel's CSPRNG (kernel/devices/random.ts).
 */
import { hw } from "../../hw.ts";
import type { VirtioMmioTransport } from "./mmio.ts";
import { VirtioDriver } from "./driver.ts";
import type { Virtqueue } from "./virtqueue.ts";

/** The virtio-rng driver for one device. */
export class VirtioRng extends VirtioDriver {
  private readonly vq: Virtqueue<number>;
  private readonly pending: { resolve: (b: Uint8Array) => void; reject: (e: Error) => void; buffer: Uint8Array }[] = [];
  private readonly completeFn = (_token: number, length: number): void => {
    const p = this.pending.shift()!;
    p.resolve(p.buffer.subarray(0, length));
  };

  constructor(transport: VirtioMmioTransport) {
    super(transport, "rng");
    this.negotiate([]);
    this.vq = this.createQueue(0, 8, 1);
    transport.driverOk();
  }

  /** Up to `length` bytes of entropy from the host (the device may return fewer). */
  read(length: number): Promise<Uint8Array> {
    if (this.broken !== null) return Promise.reject(this.broken);
    const dma = hw.dmaAlloc(length, 16);
    const buffer = new Uint8Array(dma.buffer);
    return new Promise((resolve, reject) => {
      this.vq.addIn(dma.phys, length);
      if (!this.vq.submit(0)) {
        reject(new Error(`${this.name}: too many reads in flight`));
        return;
      }
      this.pending.push({ resolve, reject, buffer });
      this.vq.kick();
      this.startPolling();
    });
  }

  /** Exactly `length` bytes of entropy, waiting by spinning; throws after `timeoutMs`. */
  readSync(length: number, timeoutMs = 500): Uint8Array {
    if (this.broken !== null) throw this.broken;
    if (this.pending.length > 0) throw new Error(`${this.name}: readSync while asynchronous reads are pending`);
    const out = new Uint8Array(length);
    const dma = hw.dmaAlloc(length, 16);
    const buffer = new Uint8Array(dma.buffer);
    const deadline = hw.now() + timeoutMs;
    let filled = 0;
    while (filled < length) {
      this.vq.addIn(dma.phys, length - filled);
      this.vq.submit(0);
      this.vq.kick();
      let got = -1;
      while (got < 0) {
        this.vq.poll((_t, n) => { got = n; });
        if (this.broken !== null) throw this.broken;
        if (got < 0 && hw.now() > deadline) {
          this.fail(`no entropy after ${timeoutMs} ms`);
          throw this.broken!;
        }
      }
      out.set(buffer.subarray(0, got), filled);
      filled += got;
    }
    return out;
  }

  protected service(): boolean {
    return this.vq.poll(this.completeFn) > 0;
  }

  protected busy(): boolean {
    return this.pending.length > 0;
  }

  protected rejectAll(error: Error): void {
    for (const p of this.pending.splice(0)) p.reject(error);
  }
}
