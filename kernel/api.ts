/**
 * The public API of Torito: what apps import as "torito".
 */
/// <reference path="./globals.d.ts" />
import { hw } from "./hw.ts";
import { parseCmdline } from "./cmdline.ts";
import { flushConsole } from "./devices/index.ts";

function readCmdline(): string {
  try {
    return hw.cmdline();
  } catch {
    return ""; // on Node (unit tests) without native bindings
  }
}

/** The kernel command line exactly as the VMM passed it. */
export const cmdline: string = readCmdline();

/** The app's arguments: what follows the first standalone `--` on the kernel command line. */
export const args: string[] = parseCmdline(cmdline).args;

/** Torito's version. */
export const version = "0.1.0";

/** Powers the VM off; `torito run` exits with `code` (an integer 0..127, default 0: QEMU reports the code in 7 bits). */
export function exit(code: number = 0): never {
  if (!Number.isInteger(code) || code < 0 || code > 127) {
    throw new RangeError(`exit code must be an integer from 0 to 127, got ${String(code)}`);
  }
  flushConsole();
  return hw.exit(code);
}

/** Boot milestones in ms since the boot core's first instruction (e.g. runtimeEntry, bytecodeLoaded). */
export function bootTimes(): Record<string, number> {
  return hw.bootTimes();
}

/** `cores`: this core's id, the core count, messages and function calls between cores. */
export { cores, type CoreFunction, type CoreMessageEvent } from "./process/cores.ts";

/** `memory`: this core's heap limit, use and peak. */
export { memory, type MemoryUsage } from "./memory/index.ts";

/** `devices`: list the VM's virtio devices, the virtio console, idle-policy stats; `blk`: open block devices. */
export { blk, devices } from "./devices/index.ts";
export type { BlockDevice, ConsoleDevice, DeviceInfo, DeviceKind } from "./devices/index.ts";

/** Files: `fs.readFile`, `fs.stat`, `fs.readdir` over the mounts (/app: files packed into the image). */
export * as fs from "./fs/index.ts";
/** HTTP: `serve({ port }, (request) => Response)` on this core's network stack. */
export { serve, type Handler, type Server, type ServeOptions } from "./net/http/serve.ts";
/** TCP, UDP and DNS: `net.listen(port)`, `net.connect(host, port)`, `net.udp(port)`, `net.resolve(name)`. */
export * as net from "./net/api.ts";
/** Web-standard classes (also installed as globals, since QuickJS has none of them). */
export { Headers } from "./web/headers.ts";
export { Request } from "./web/request.ts";
export { Response } from "./web/response.ts";
export { ReadableStream } from "./web/streams.ts";
export { URL, URLSearchParams } from "./web/url.ts";
