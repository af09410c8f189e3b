/**
 * The native bindings that platform/runtime (C, ring 3) installs as the global
 * `__toritoNative` before the bundle runs. Only kernel/hw.ts may touch this object:
 * it captures it and deletes the global, so neither the kernel's other modules nor the
 * app can reach raw hardware access except through the facade.
 *
 * Numbers that are physical addresses fit in 2^53 (guest RAM and MMIO sit below 4 GiB).
 */
export interface NativeBindings {
  /** Writes bytes to the console (UART 0x3f8 for now). Strings are written as UTF-8. */
  write(data: string | Uint8Array): void;

  /** Milliseconds since the first instruction of the boot core, from the TSC (double, µs precision). */
  now(): number;
  /** Milliseconds since the Unix epoch (wall clock; kvmclock or CMOS RTC at boot + TSC since). */
  epochMs(): number;
  /** TSC ticks per millisecond, as calibrated at boot. */
  tscPerMs(): number;
  /** Raw TSC as a double (loses precision after ~2^53 ticks, i.e. weeks). */
  rdtsc(): number;
  /** Timestamps (ms since first instruction) of boot milestones, e.g. { runtimeEntry, bytecodeLoaded }. */
  bootTimes(): Record<string, number>;

  /** Halts this core until an interrupt arrives or `deadlineMs` (same clock as now()) passes.
   *  deadlineMs < 0 means no deadline. Returns the bitmask of vectors 32..63 that fired
   *  since the last call (bit n = vector 32+n). */
  idle(deadlineMs: number): number;
  /** Powers the VM off; the host CLI's exit code becomes `code` (0..255). Never returns. */
  exit(code: number): never;

  /** The kernel command line as QEMU passed it (hvm_start_info cmdline). */
  cmdline(): string;
  /** This core's index (0 = boot core) and the number of cores running. */
  coreId(): number;
  coreCount(): number;

  /** Puts one message on the ring from this core to core `to` (platform/runtime/smp.c):
   *  `text` and the ArrayBuffers in `buffers`, which are detached here and handed over
   *  without a copy (their memory goes home to its owner's heap when the receiver frees
   *  it). Returns true when the message is on the ring, false when it waits behind a full
   *  ring (coreFlush sends it later, in order). Throws for a bad core, or a buffer that is
   *  not heap memory (e.g. imageFiles()). Wakes the target if it halted. */
  coreSend(to: number, text: string, buffers: ArrayBuffer[]): boolean;
  /** Sends messages that waited for room; returns how many still wait. */
  coreFlush(): number;
  /** The next message for this core from any other core, or null. */
  coreReceive(): [from: number, text: string, buffers: ArrayBuffer[]] | null;
  /** Tells senders this core may halt (they then send the wake-up interrupt); returns true
   *  if a message arrived meanwhile, in which case the core must not halt. */
  coreArmWake(): boolean;
  /** Sends the wake-up interrupt to `core` if it may be halting (after its coreArmWake());
   *  returns whether it sent one. */
  coreWake(core: number): boolean;
  /** Bit i set when core i has stopped (its heap ran out). */
  coresFailed(): number;

  /** MMIO accessors (ring 3 has these pages mapped user, uncached). */
  mmioRead8(addr: number): number;
  mmioRead16(addr: number): number;
  mmioRead32(addr: number): number;
  mmioRead64(addr: number): bigint;
  mmioWrite8(addr: number, value: number): void;
  mmioWrite16(addr: number, value: number): void;
  mmioWrite32(addr: number, value: number): void;
  mmioWrite64(addr: number, value: bigint): void;

  /** Port I/O: only ports opened in the TSS I/O bitmap work; others fault (#GP). */
  inb(port: number): number;
  inw(port: number): number;
  inl(port: number): number;
  outb(port: number, value: number): void;
  outw(port: number, value: number): void;
  outl(port: number, value: number): void;

  /** Allocates DMA-capable memory from this core's region: identity-mapped, physically
   *  contiguous, zeroed. The ArrayBuffer aliases that memory (no copy); it is returned to
   *  the pool when the ArrayBuffer is collected. Throws RangeError when the region is full. */
  dmaAlloc(size: number, align: number): { buffer: ArrayBuffer; phys: number };
  /** Physical address of byte 0 of an ArrayBuffer obtained from dmaAlloc, or -1. */
  physAddr(buffer: ArrayBuffer): number;

  /** Routes IOAPIC input `gsi` to vector (32 + `line`) on this core, edge/level as given. */
  irqRoute(gsi: number, line: number, levelTriggered: boolean): void;
  /** Masks the IOAPIC input again. */
  irqMask(gsi: number): void;
  /** When interrupt line `line` (1..31) fires on this core, the supervisor at once wakes the
   *  halted cores of the bit mask `cores` (a multiqueue NIC's one interrupt); 0 stops it. */
  irqForward(line: number, cores: number): void;

  /** Full memory barrier (mfence): orders earlier stores before later loads, e.g. a virtqueue's
   *  avail index before reading the device's event index (virtio 1.2 §2.7.13.4). */
  fence(): void;

  /** Files packed into the image by `torito build --files` (kernel/fs/image-format.ts), as a
   *  zero-copy view of the image's data, or null. Treat it as read-only. */
  imageFiles(): ArrayBuffer | null;
  /** The Internet checksum's running sum of bytes[start, end) as big-endian 16-bit words,
   *  plus `initial` (unfolded; see kernel/net/wire/checksum.ts). */
  checksum(bytes: Uint8Array, start: number, end: number, initial: number): number;
  /** ChaCha20 (RFC 8439): `blocks` key-stream blocks for key (8 words), nonce (3 words) and
   *  counters from `counter`, into out (16 words per block). */
  chacha20(key: Uint32Array, nonce: Uint32Array, counter: number, blocks: number, out: Uint32Array): void;
  /** UTF-8 bytes of `text`, or null if it holds lone surrogates (then encode in TypeScript). */
  utf8Encode(text: string): ArrayBuffer | null;
  /** The HTTP request head in bytes[start, end) cut and checked (platform/runtime/httphead.c):
   *  [method, target, minorVersion, name, value, …] or a negative error code (kernel/net/http/wire.ts). */
  httpHead(bytes: Uint8Array, start: number, end: number, maxRequestLine: number, maxHeaderCount: number): (string | number)[] | number;
  /** The index just past the blank line (CRLFCRLF or LF LF) ending a head in bytes[from, end), or -1 (wire.ts findHeadEnd). */
  httpHeadEnd(bytes: Uint8Array, from: number, end: number): number;

  /** The source-map table linked into the image (see host/build.ts), or null. */
  sourceMap(): ArrayBuffer | null;

  /** This core's JavaScript heap: hard limit, bytes in use and the peak, in bytes. */
  memoryUsage(): { limit: number; used: number; peak: number; dmaUsed: number; dmaLimit: number };
  /** Runs the garbage collector now. */
  gc(): void;
}

declare global {
  // eslint-disable-next-line no-var
  var __toritoNative: NativeBindingsWithHooks | undefined;
}

/** Hooks the kernel hands to the runtime's event loop (platform/runtime/loop.c). */
export interface LoopHooks {
  /**
   * One turn of the scheduler: fire due timers, poll devices. `firedVectors` is the mask
   * returned by the last idle(); `ranJobs` whether microtasks ran since the previous turn.
   * Returns what the loop should do once microtasks are drained:
   *   a deadline >= 0 (ms, now() clock) to idle until (or to poll again at once if it has passed),
   *   -1 to idle until an interrupt with no deadline,
   *   -2 when nothing is left to wait for: the VM powers off with code 0 (like Node).
   * Exceptions thrown from here are uncaught errors: the runtime reports them and exits 1.
   */
  turn(firedVectors: number, ranJobs: boolean): number;
  /** Formats an uncaught error or rejection reason for the console, with the stack
   *  source-mapped to TypeScript files and lines. Must not throw. */
  formatError(error: unknown): string;
}

export interface NativeBindingsWithHooks extends NativeBindings {
  /** Installs the scheduler and error formatter; called once by kernel/init.ts. */
  setHooks(hooks: LoopHooks): void;
}
