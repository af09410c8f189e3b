/**
 * Kernel start-up: the bundle entry imports this module FIRST, before the app.
 *
 * It installs the globals QuickJS lacks (console, timers, queueMicrotask, TextEncoder,
 * TextDecoder, performance) and hands the scheduler and the error formatter to the C event
 * loop. It does as little as possible: boot time matters, so the source map is loaded only
 * when an error is formatted (kernel/errors.ts).
 */
import { hw } from "./hw.ts";
import { console } from "./console.ts";
import { TextDecoder, TextEncoder } from "./encoding.ts";
import { formatError } from "./errors.ts";
import { performance } from "./performance.ts";
import { Headers } from "./web/headers.ts";
import { Request } from "./web/request.ts";
import { Response } from "./web/response.ts";
import { ReadableStream } from "./web/streams.ts";
import { URL, URLSearchParams } from "./web/url.ts";
import { crypto } from "./devices/index.ts";
import { clearInterval, clearTimeout, setInterval, setTimeout, turn } from "./process/scheduler.ts";

function defineGlobal(name: string, value: unknown): void {
  // Like web globals: writable and configurable, not enumerable.
  Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });
}

defineGlobal("console", console);
defineGlobal("setTimeout", setTimeout);
defineGlobal("setInterval", setInterval);
defineGlobal("clearTimeout", clearTimeout);
defineGlobal("clearInterval", clearInterval);
defineGlobal("TextEncoder", TextEncoder);
defineGlobal("TextDecoder", TextDecoder);
defineGlobal("performance", performance);
// Web-standard classes QuickJS lacks (the HTTP server's Request/Response/Headers).
for (const [name, value] of Object.entries({ Headers, Request, Response, ReadableStream, URL, URLSearchParams })) {
  if (typeof (globalThis as Record<string, unknown>)[name] === "undefined") defineGlobal(name, value);
}
// Seeded on first use (virtio-rng when present): boot pays nothing for it.
defineGlobal("crypto", crypto);
if (typeof globalThis.queueMicrotask !== "function") {
  defineGlobal("queueMicrotask", (callback: () => void): void => {
    if (typeof callback !== "function") throw new TypeError('The "callback" argument must be of type function');
    // An exception becomes an unhandled rejection, which the runtime reports and exits 1.
    void Promise.resolve().then(callback);
  });
}

hw.setHooks({ turn, formatError });
