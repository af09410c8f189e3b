/**
 * Types of the globals kernel/init.ts installs, for app code compiled without @types/node
 * (kernel/api.ts references this file, so importing "torito" brings them in). Where
 * @types/node is also loaded its declarations coexist with these.
 */
import type { ToritoConsole } from "./console.ts";
import type { TextDecoder as ToritoTextDecoder, TextEncoder as ToritoTextEncoder } from "./encoding.ts";
import type { performance as toritoPerformance } from "./performance.ts";
import type { Timeout } from "./process/scheduler.ts";
import type { ToritoCrypto } from "./devices/random.ts";

declare global {
  var console: ToritoConsole;
  var performance: typeof toritoPerformance;
  var TextEncoder: typeof ToritoTextEncoder;
  var TextDecoder: typeof ToritoTextDecoder;
  var crypto: ToritoCrypto;
  function setTimeout<A extends unknown[]>(callback: (...args: A) => void, delay?: number, ...args: A): Timeout;
  function setInterval<A extends unknown[]>(callback: (...args: A) => void, delay?: number, ...args: A): Timeout;
  function clearTimeout(handle: Timeout | number | string | undefined | null): void;
  function clearInterval(handle: Timeout | number | string | undefined | null): void;
  function queueMicrotask(callback: () => void): void;
}

export {};
