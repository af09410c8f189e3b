/**
 * Formatting of uncaught errors and unhandled rejections (LoopHooks.formatError), and the
 * lazily loaded source map that turns bundle positions in stacks into TypeScript ones.
 *
 * The tables are read from hw.sourceMap() the first time a stack is mapped, never at boot.
 */
import { hw } from "./hw.ts";
import { inspect, setStackMapper } from "./inspect.ts";
import { SourceMaps } from "./sourcemap.ts";

/** undefined: not loaded yet; null: no table in the image (or it is unreadable). */
let maps: SourceMaps | null | undefined;

/** The image's source map tables (one per generated file), loaded on first use; null when the image has none. */
export function sourceMaps(): SourceMaps | null {
  if (maps === undefined) {
    maps = null;
    try {
      const buffer = hw.sourceMap();
      if (buffer !== null) maps = new SourceMaps(buffer);
    } catch {
      maps = null;
    }
  }
  return maps;
}

/** Rewrites an engine stack's frames to TypeScript positions (unchanged when unmapped). */
export function mapStack(stack: string): string {
  const m = sourceMaps();
  return m === null ? stack : m.mapStack(stack);
}

setStackMapper(mapStack);

/**
 * The text printed for an uncaught error: for an Error, "Name: message" and its mapped
 * stack, then its extra properties, `[cause]` and AggregateError's `[errors]` as Node shows
 * them; for any other value, the inspected value (`42`, `'text'`, `{ code: 1 }`). No
 * prefix: the runtime prepends "Uncaught " or "Uncaught (in promise) ". Never throws.
 */
export function formatError(error: unknown): string {
  try {
    if (error instanceof Error) return inspect(error);
    return inspect(error);
  } catch (failure) {
    let reason = "";
    try {
      reason = failure instanceof Error ? `${failure.name}: ${failure.message}` : typeof failure;
    } catch {
      reason = "unknown";
    }
    try {
      if (error instanceof Error) return `${String(error.name)}: ${String(error.message)} (formatting failed: ${reason})`;
    } catch {
      // fall through
    }
    return `exception (formatting failed: ${reason})`;
  }
}
