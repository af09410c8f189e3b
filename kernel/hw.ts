/**
 * The hardware facade: the ONLY module that touches the native bindings installed by
 * platform/runtime as `globalThis.__toritoNative`. It captures that object at import time
 * and deletes the global, so neither the rest of the kernel nor the app can reach raw
 * hardware except through `hw`.
 *
 * `hw` is one stable object whose members are the native functions themselves (copied,
 * not wrapped: `hw.now()` costs one native call). The native functions must therefore not
 * depend on `this`.
 *
 * On Node (unit tests) there is no `__toritoNative`: every member of `hw` then throws a
 * clear error until a test supplies a fake through `installNativeForTests`.
 */
import type { NativeBindingsWithHooks } from "./native.d.ts";

export type { LoopHooks, NativeBindings, NativeBindingsWithHooks } from "./native.d.ts";

/** The hardware as the kernel sees it: the native bindings plus setHooks (init.ts only). */
export type Hardware = NativeBindingsWithHooks;

const MEMBERS: readonly (keyof Hardware)[] = [
  "write", "now", "epochMs", "tscPerMs", "rdtsc", "bootTimes", "idle", "exit",
  "cmdline", "coreId", "coreCount",
  "mmioRead8", "mmioRead16", "mmioRead32", "mmioRead64",
  "mmioWrite8", "mmioWrite16", "mmioWrite32", "mmioWrite64",
  "inb", "inw", "inl", "outb", "outw", "outl",
  "dmaAlloc", "physAddr", "irqRoute", "irqMask", "irqForward", "fence", "checksum", "chacha20", "imageFiles", "utf8Encode", "httpHead", "httpHeadEnd", "sourceMap",
  "memoryUsage", "gc", "setHooks", "coreSend", "coreReceive", "coreArmWake", "coreFlush", "coresFailed", "coreWake",
];

function missing(name: string): () => never {
  return () => {
    throw new Error(`hw.${name}: not provided by the native runtime (on Node, tests call installNativeForTests)`);
  };
}

function fill(target: Record<string, unknown>, source: Partial<Hardware> | undefined): void {
  for (const name of MEMBERS) {
    const fn = source?.[name];
    target[name] = typeof fn === "function" ? fn : missing(name);
  }
}

/** The hardware: every native binding the kernel uses, as plain functions. */
export const hw = {} as Hardware;

/** True when real native bindings were found at boot (false on Node). */
export const isNative: boolean = typeof globalThis.__toritoNative === "object" && globalThis.__toritoNative !== null;

fill(hw as unknown as Record<string, unknown>, globalThis.__toritoNative);
if (isNative) delete globalThis.__toritoNative;

/**
 * TEST ONLY: replaces the bindings with `fake` (members it lacks throw when called).
 * Refused when real native bindings are present, so an app cannot use it to swap hardware.
 */
export function installNativeForTests(fake: Partial<Hardware>): void {
  if (isNative) throw new Error("installNativeForTests: real native bindings are installed");
  fill(hw as unknown as Record<string, unknown>, fake);
}
