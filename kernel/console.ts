/**
 * The global `console`, printing like Node's (formatting in kernel/inspect.ts).
 *
 * Every call produces exactly ONE hw.write of the whole text and its newline: the UART
 * costs ~47 µs per byte and each write is a native call, so nothing is written piecemeal.
 * All methods are plain functions (they work when detached, e.g. `.then(console.log)`).
 * stdout and stderr are the same device for now.
 */
import { hw } from "./hw.ts";
import { errorStackText, format, inspect, type InspectOptions } from "./inspect.ts";

let groupIndent = "";
const counts = new Map<string, number>();
const timers = new Map<string, number>();

function print(text: string): void {
  if (groupIndent !== "") text = groupIndent + text.replace(/\n/g, `\n${groupIndent}`);
  hw.write(`${text}\n`);
}

function pad2(n: number | string): string {
  return String(n).padStart(2, "0");
}

/** Node's console.time format: "1.234ms", "1.500s", "1:02.345 (m:ss.mmm)". */
export function formatDuration(ms: number): string {
  let hours = 0;
  let minutes = 0;
  let seconds = 0;
  if (ms >= 1000) {
    if (ms >= 60000) {
      if (ms >= 3600000) {
        hours = Math.floor(ms / 3600000);
        ms %= 3600000;
      }
      minutes = Math.floor(ms / 60000);
      ms %= 60000;
    }
    seconds = ms / 1000;
  }
  if (hours !== 0 || minutes !== 0) {
    const [s, frac] = seconds.toFixed(3).split(".");
    const head = hours !== 0 ? `${hours}:${pad2(minutes)}` : `${minutes}`;
    return `${head}:${pad2(s!)}.${frac} (${hours !== 0 ? "h:m" : ""}m:ss.mmm)`;
  }
  if (seconds !== 0) return `${seconds.toFixed(3)}s`;
  return `${Number(ms.toFixed(3))}ms`;
}

function warnLabel(label: string, method: string, problem: string): void {
  print(`Warning: ${problem.replace("%s", label)} for console.${method}()`);
}

function log(...data: unknown[]): void {
  print(format(...data));
}

function trace(...data: unknown[]): void {
  const err = new Error(format(...data));
  err.name = "Trace";
  // Drop the frame of trace() itself (QuickJS stacks hold only frames; V8 adds a header).
  const stack = err.stack;
  if (typeof stack === "string") {
    const lines = stack.split("\n");
    const first = lines.findIndex((l) => /^\s+at /.test(l));
    if (first >= 0) lines.splice(first, 1);
    err.stack = lines.join("\n");
  }
  print(errorStackText(err));
}

function assert(value: unknown, ...data: unknown[]): void {
  if (value) return;
  if (typeof data[0] === "string") data[0] = `Assertion failed: ${data[0]}`;
  else data.unshift("Assertion failed");
  print(format(...data));
}

function time(label = "default"): void {
  label = `${label}`;
  if (timers.has(label)) {
    warnLabel(label, "time", "Label '%s' already exists");
    return;
  }
  timers.set(label, hw.now());
}

function timeLogImpl(method: string, label: string, end: boolean, data: unknown[]): void {
  const start = timers.get(label);
  if (start === undefined) {
    warnLabel(label, method, "No such label '%s'");
    return;
  }
  if (end) timers.delete(label);
  const text = `${label}: ${formatDuration(hw.now() - start)}`;
  print(data.length > 0 ? `${text} ${format(...data)}` : text);
}

function count(label = "default"): void {
  label = `${label}`;
  const n = (counts.get(label) ?? 0) + 1;
  counts.set(label, n);
  print(`${label}: ${n}`);
}

/** The console installed as globalThis.console. */
export const console = {
  log,
  info: log,
  debug: log,
  warn: log,
  error: log,
  trace,
  assert,
  /** Prints one value with inspect options (depth etc.). */
  dir(value: unknown, options?: InspectOptions): void {
    print(inspect(value, options));
  },
  dirxml: log,
  /** Not a table layout yet: prints the data like console.log. */
  table: log,
  time,
  timeEnd(label = "default"): void {
    timeLogImpl("timeEnd", `${label}`, true, []);
  },
  timeLog(label = "default", ...data: unknown[]): void {
    timeLogImpl("timeLog", `${label}`, false, data);
  },
  count,
  countReset(label = "default"): void {
    label = `${label}`;
    if (!counts.has(label)) warnLabel(label, "countReset", "Count for '%s' does not exist");
    else counts.set(label, 0);
  },
  group(...data: unknown[]): void {
    if (data.length > 0) log(...data);
    groupIndent += "  ";
  },
  groupCollapsed(...data: unknown[]): void {
    if (data.length > 0) log(...data);
    groupIndent += "  ";
  },
  groupEnd(): void {
    groupIndent = groupIndent.slice(0, -2);
  },
};

/** The type of the kernel's console object. */
export type ToritoConsole = typeof console;
