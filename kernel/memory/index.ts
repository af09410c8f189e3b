/**
 * The Memory unit: this core's memory, as the app sees it.
 *
 * RAM above the image is split into one region per core (equal shares, or weighted with
 * `torito run --mem-weights`), and each core's JavaScript heap and DMA buffers live in its
 * region only, with a hard limit (platform/runtime/malloc.c, smp.c). A core that reaches
 * its limit stops alone with a report; the other cores go on (kernel/process/cores.ts).
 */
import { hw } from "../hw.ts";

/** This core's heap figures, in bytes. */
export interface MemoryUsage {
  /** The size of this core's heap: allocations beyond it fail. */
  limit: number;
  /** Bytes allocated now (JavaScript objects, engine data, DMA buffers). */
  used: number;
  /** The most ever allocated at once. */
  peak: number;
  /** The part of `used` that device DMA buffers hold. */
  dma: number;
}

/** The memory API of `torito`. */
export const memory = {
  /** This core's heap limit, use and peak. */
  usage(): MemoryUsage {
    const u = hw.memoryUsage();
    return { limit: u.limit, used: u.used, peak: u.peak, dma: u.dmaUsed };
  },
  /** Runs this core's garbage collector now (it also runs by itself as the heap grows). */
  gc(): void {
    hw.gc();
  },
};
