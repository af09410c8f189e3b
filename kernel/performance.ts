/**
 * The global `performance` (High Resolution Time): now() is hw.now(), milliseconds since
 * the boot core's first instruction, so timeOrigin is the wall-clock time of that instant.
 * mark() and measure() keep named timestamps, without the PerformanceObserver machinery.
 */
import { hw } from "./hw.ts";

/** A mark or a measure, as performance.mark()/measure() return them. */
export interface PerformanceEntry {
  readonly name: string;
  readonly entryType: "mark" | "measure";
  readonly startTime: number;
  readonly duration: number;
  readonly detail: unknown;
}

let origin: number | undefined;
const marks = new Map<string, PerformanceEntry>();
const measures: PerformanceEntry[] = [];

function timeOf(nameOrTime: string | number | undefined, fallback: number): number {
  if (nameOrTime === undefined) return fallback;
  if (typeof nameOrTime === "number") return nameOrTime;
  const mark = marks.get(nameOrTime);
  if (mark === undefined) throw new SyntaxError(`The "${nameOrTime}" performance mark has not been set`);
  return mark.startTime;
}

/** The global performance object. */
export const performance = {
  /** Milliseconds since boot (µs precision). */
  now(): number {
    return hw.now();
  },
  /** Unix epoch milliseconds at boot (the instant performance.now() counts from). */
  get timeOrigin(): number {
    if (origin === undefined) origin = hw.epochMs() - hw.now();
    return origin;
  },
  /** Records a named timestamp. */
  mark(name: string, options?: { startTime?: number; detail?: unknown }): PerformanceEntry {
    const entry: PerformanceEntry = {
      name: `${name}`,
      entryType: "mark",
      startTime: options?.startTime ?? hw.now(),
      duration: 0,
      detail: options?.detail ?? null,
    };
    marks.set(entry.name, entry);
    return entry;
  },
  /** Records the time between two marks (or a mark and now). */
  measure(name: string, startMark?: string | { start?: string | number; end?: string | number; detail?: unknown }, endMark?: string): PerformanceEntry {
    const now = hw.now();
    let start: number;
    let end: number;
    let detail: unknown = null;
    if (typeof startMark === "object") {
      start = timeOf(startMark.start, 0);
      end = timeOf(startMark.end, now);
      detail = startMark.detail ?? null;
    } else {
      start = timeOf(startMark, 0);
      end = timeOf(endMark, now);
    }
    const entry: PerformanceEntry = { name: `${name}`, entryType: "measure", startTime: start, duration: end - start, detail };
    measures.push(entry);
    return entry;
  },
  /** Marks and measures, optionally of one type, in time order. */
  getEntries(): PerformanceEntry[] {
    return [...marks.values(), ...measures].sort((a, b) => a.startTime - b.startTime);
  },
  getEntriesByName(name: string, type?: string): PerformanceEntry[] {
    return performance.getEntries().filter((e) => e.name === name && (type === undefined || e.entryType === type));
  },
  getEntriesByType(type: string): PerformanceEntry[] {
    return performance.getEntries().filter((e) => e.entryType === type);
  },
  clearMarks(name?: string): void {
    if (name === undefined) marks.clear();
    else marks.delete(name);
  },
  clearMeasures(name?: string): void {
    for (let i = measures.length - 1; i >= 0; i--) {
      if (name === undefined || measures[i]!.name === name) measures.splice(i, 1);
    }
  },
  toJSON(): { timeOrigin: number } {
    return { timeOrigin: performance.timeOrigin };
  },
};
