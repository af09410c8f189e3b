/**
 * Source maps for stack traces, both sides, with no imports beyond the kernel's encoder:
 *
 * - host, at build time: `encodeSourceMapTable(map)` turns esbuild's JSON source map into a
 *   compact binary table that is linked into the image;
 * - guest, on the first error: `SourceMapTable` reads that table and `mapStack()` rewrites
 *   QuickJS stack frames (`    at fn (bundle.js:123:45)`) into TypeScript positions.
 *
 * Table layout (all integers little-endian; the guest decodes only the lines it needs):
 *
 *   0   u32  magic "TSM1"
 *   4   u32  lineCount (generated lines)
 *   8   u32  headerLength N
 *   12  N bytes of UTF-8 JSON {"file": string, "sources": string[]}, zero-padded to 4
 *   ..  u32[lineCount + 1] byte offsets of each line's segments in the data that follows
 *   ..  segment data. Per line, segments in increasing generated column, each:
 *         uvarint (generatedColumnDelta * 2 + mapped)      delta from the previous segment
 *         if mapped: zigzag varints of sourceIndex, originalLine, originalColumn, as
 *                    deltas from the previous mapped segment of the same line (from 0,0,0)
 *
 * Lines are 1-based and columns 1-based at the API (as in stack traces); 0-based inside.
 *
 * An image holds one table per module (module 0, the kernel's start-up, the app and each
 * chunk esbuild split off: host/build.ts), one after the other, each padded to a multiple
 * of 4 bytes: `encodeSourceMapTables` and `SourceMaps`.
 */
import { TextDecoder, TextEncoder } from "./encoding.ts";

const MAGIC = 0x314d5354; // "TSM1" little-endian

/** A standard (version 3) source map, as esbuild writes it. */
export interface RawSourceMap {
  version: number;
  sources: string[];
  mappings: string;
  names?: string[];
  sourcesContent?: (string | null)[];
  sourceRoot?: string;
  file?: string;
}

/** How encodeSourceMapTable names things. */
export interface SourceMapTableOptions {
  /** Absolute directory of the .map file; sources are resolved against it (and sourceRoot). */
  mapDir?: string;
  /** Absolute directory that the table's source paths are made relative to (e.g. the project root). */
  baseDir?: string;
  /** The file name QuickJS reports in stack frames (the name given to qjsc); frames naming
   *  another file are left alone. Empty or absent: every frame is mapped. */
  file?: string;
}

/** An original position, 1-based line and column. */
export interface OriginalPosition {
  source: string;
  line: number;
  column: number;
}

// ---- paths (POSIX, no node:path in the guest) ----------------------------------------

function normalizePath(path: string): string {
  const absolute = path.startsWith("/");
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!absolute) out.push("..");
    } else {
      out.push(part);
    }
  }
  return (absolute ? "/" : "") + out.join("/");
}

function joinPath(base: string, path: string): string {
  if (path.startsWith("/") || base === "") return normalizePath(path);
  return normalizePath(`${base}/${path}`);
}

function relativePath(from: string, to: string): string {
  const a = normalizePath(from).split("/").filter((p) => p !== "");
  const b = normalizePath(to).split("/").filter((p) => p !== "");
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  const up = a.slice(i).map(() => "..");
  return [...up, ...b.slice(i)].join("/") || ".";
}

// ---- VLQ (source map "mappings") -----------------------------------------------------

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < BASE64.length; i++) BASE64_VALUE[BASE64.charCodeAt(i)] = i;

type Segment = [number] | [number, number, number, number] | [number, number, number, number, number];

/** Decodes a "mappings" string into per-line segment lists (0-based numbers), sorted by column. */
export function decodeMappings(mappings: string): Segment[][] {
  const lines: Segment[][] = [];
  let line: Segment[] = [];
  let sourceIndex = 0;
  let originalLine = 0;
  let originalColumn = 0;
  let nameIndex = 0;
  let generatedColumn = 0;
  let sorted = true;
  const fields: number[] = [];
  let i = 0;
  const n = mappings.length;
  const finishLine = (): void => {
    if (!sorted) line.sort((x, y) => x[0] - y[0]);
    lines.push(line);
    line = [];
    sorted = true;
    generatedColumn = 0;
  };
  while (i <= n) {
    const c = i < n ? mappings.charCodeAt(i) : 59;
    if (c === 59 /* ; */ || c === 44 /* , */) {
      i++;
      if (fields.length > 0) {
        generatedColumn += fields[0]!;
        if (line.length > 0 && generatedColumn < line[line.length - 1]![0]) sorted = false;
        if (fields.length >= 4) {
          sourceIndex += fields[1]!;
          originalLine += fields[2]!;
          originalColumn += fields[3]!;
          if (fields.length >= 5) {
            nameIndex += fields[4]!;
            line.push([generatedColumn, sourceIndex, originalLine, originalColumn, nameIndex]);
          } else {
            line.push([generatedColumn, sourceIndex, originalLine, originalColumn]);
          }
        } else {
          line.push([generatedColumn]);
        }
        fields.length = 0;
      }
      if (c === 59) {
        finishLine();
        if (i > n) break;
      }
      continue;
    }
    // One VLQ value.
    let value = 0;
    let shift = 0;
    for (;;) {
      const digit = BASE64_VALUE[mappings.charCodeAt(i++)] ?? -1;
      if (digit < 0) throw new Error(`invalid base64 digit in mappings at ${i - 1}`);
      value += (digit & 31) * 2 ** shift;
      shift += 5;
      if ((digit & 32) === 0) break;
    }
    fields.push(value % 2 === 1 ? -(value - 1) / 2 : value / 2);
  }
  return lines;
}

// ---- binary writer / reader ----------------------------------------------------------

class ByteWriter {
  bytes = new Uint8Array(1024);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.bytes.subarray(0, this.length));
    this.bytes = next;
  }

  uvarint(v: number): void {
    this.reserve(8);
    while (v >= 0x80) {
      this.bytes[this.length++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.bytes[this.length++] = v;
  }

  svarint(v: number): void {
    this.uvarint(v < 0 ? -v * 2 - 1 : v * 2);
  }
}

/**
 * Builds the binary table from a source map (host side, at build time). Sources are
 * resolved against `mapDir`/`sourceRoot` and made relative to `baseDir` when given.
 */
export function encodeSourceMapTable(map: RawSourceMap, options: SourceMapTableOptions = {}): Uint8Array {
  if (map.version !== 3) throw new Error(`unsupported source map version ${map.version}`);
  const root = map.sourceRoot ?? "";
  const sources = map.sources.map((source) => {
    let path = root !== "" ? joinPath(root, source) : source;
    if (options.mapDir !== undefined) path = joinPath(options.mapDir, path);
    if (options.baseDir !== undefined && path.startsWith("/")) path = relativePath(options.baseDir, path);
    return path;
  });
  const header = new TextEncoder().encode(JSON.stringify({ file: options.file ?? "", sources }));
  const lines = decodeMappings(map.mappings);

  const data = new ByteWriter();
  const offsets = new Uint32Array(lines.length + 1);
  for (let l = 0; l < lines.length; l++) {
    offsets[l] = data.length;
    let column = 0;
    let source = 0;
    let line = 0;
    let originalColumn = 0;
    for (const seg of lines[l]!) {
      const mapped = seg.length >= 4;
      data.uvarint((seg[0] - column) * 2 + (mapped ? 1 : 0));
      column = seg[0];
      if (mapped) {
        data.svarint(seg[1]! - source);
        data.svarint(seg[2]! - line);
        data.svarint(seg[3]! - originalColumn);
        source = seg[1]!;
        line = seg[2]!;
        originalColumn = seg[3]!;
      }
    }
  }
  offsets[lines.length] = data.length;

  const headerPadded = (header.length + 3) & ~3;
  const total = 12 + headerPadded + offsets.byteLength + data.length;
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, lines.length, true);
  view.setUint32(8, header.length, true);
  out.set(header, 12);
  let at = 12 + headerPadded;
  for (let i = 0; i < offsets.length; i++, at += 4) view.setUint32(at, offsets[i]!, true);
  out.set(data.bytes.subarray(0, data.length), at);
  return out;
}

/** A source-map table loaded from the image (guest side). Lookups decode one line each. */
export class SourceMapTable {
  /** The generated file name frames must carry to be mapped ("" = any). */
  readonly file: string;
  /** Source paths, relative to the build's base directory. */
  readonly sources: readonly string[];
  private readonly lineCount: number;
  /** The table's own length in bytes (what follows it belongs to the next table). */
  readonly byteLength: number;
  private readonly offsets: DataView;
  private readonly data: Uint8Array;

  constructor(buffer: ArrayBuffer | Uint8Array) {
    const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.byteLength < 12 || view.getUint32(0, true) !== MAGIC) throw new Error("not a Torito source map table");
    this.lineCount = view.getUint32(4, true);
    const headerLength = view.getUint32(8, true);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + headerLength))) as {
      file: string;
      sources: string[];
    };
    this.file = header.file;
    this.sources = header.sources;
    const offsetsStart = 12 + ((headerLength + 3) & ~3);
    const offsetsLength = (this.lineCount + 1) * 4;
    if (offsetsStart + offsetsLength > bytes.byteLength) throw new Error("truncated Torito source map table");
    this.offsets = new DataView(bytes.buffer, bytes.byteOffset + offsetsStart, offsetsLength);
    const dataStart = offsetsStart + offsetsLength;
    const dataLength = this.offsets.getUint32(this.lineCount * 4, true);
    if (dataStart + dataLength > bytes.byteLength) throw new Error("truncated Torito source map table");
    this.data = bytes.subarray(dataStart, dataStart + dataLength);
    this.byteLength = dataStart + dataLength;
  }

  /** Whether frames naming `file` belong to this table. */
  covers(file: string): boolean {
    return this.file === "" || file === this.file || file.endsWith(`/${this.file}`);
  }

  /**
   * The original position of generated (line, column), both 1-based, or null when that
   * position is not mapped. Picks the segment trace-mapping's originalPositionFor picks.
   */
  lookup(line: number, column: number): OriginalPosition | null {
    const l = line - 1;
    if (!(l >= 0 && l < this.lineCount)) return null;
    const target = column - 1;
    const data = this.data;
    let at = this.offsets.getUint32(l * 4, true);
    const end = this.offsets.getUint32(l * 4 + 4, true);
    let genColumn = 0;
    let source = 0;
    let origLine = 0;
    let origColumn = 0;
    // The chosen segment: the first one at exactly `target`, else the last one before it.
    let found = false;
    let foundExact = false;
    let mapped = false;
    let foundSource = 0;
    let foundLine = 0;
    let foundColumn = 0;
    while (at < end) {
      let v = 0;
      let scale = 1;
      let b: number;
      do {
        b = data[at++]!;
        v += (b & 0x7f) * scale;
        scale *= 0x80;
      } while (b >= 0x80);
      const isMapped = v % 2 === 1;
      genColumn += (v - (isMapped ? 1 : 0)) / 2;
      if (isMapped) {
        for (let f = 0; f < 3; f++) {
          let u = 0;
          let s = 1;
          do {
            b = data[at++]!;
            u += (b & 0x7f) * s;
            s *= 0x80;
          } while (b >= 0x80);
          const delta = u % 2 === 1 ? -(u + 1) / 2 : u / 2;
          if (f === 0) source += delta;
          else if (f === 1) origLine += delta;
          else origColumn += delta;
        }
      }
      if (genColumn > target) break;
      if (genColumn === target && found && foundExact) continue;
      found = true;
      foundExact = genColumn === target;
      mapped = isMapped;
      foundSource = source;
      foundLine = origLine;
      foundColumn = origColumn;
    }
    if (!found || !mapped) return null;
    const name = this.sources[foundSource];
    if (name === undefined) return null;
    return { source: name, line: foundLine + 1, column: foundColumn + 1 };
  }

  /**
   * Rewrites the frames of a QuickJS (or V8) stack: `at fn (file:line:col)` and
   * `at file:line:col` become source positions when mapped; other lines, `(native)` frames
   * and frames of other files are kept as they are.
   */
  mapStack(stack: string): string {
    return mapFrames(stack, (file) => (this.covers(file) ? this : null));
  }
}

/** The tables of every generated file of an image, found by the file name frames carry. */
export class SourceMaps {
  readonly tables: readonly SourceMapTable[];

  constructor(buffer: ArrayBuffer | Uint8Array) {
    const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
    const tables: SourceMapTable[] = [];
    for (let at = 0; at < bytes.byteLength;) {
      const table = new SourceMapTable(bytes.subarray(at));
      tables.push(table);
      at += (table.byteLength + 3) & ~3;
    }
    if (tables.length === 0) throw new Error("no Torito source map table");
    this.tables = tables;
  }

  /** The table of generated file `file`, or null. */
  forFile(file: string): SourceMapTable | null {
    for (const table of this.tables) if (table.covers(file)) return table;
    return null;
  }

  /** SourceMapTable.mapStack over every table: each frame is mapped by its file's. */
  mapStack(stack: string): string {
    return mapFrames(stack, (file) => this.forFile(file));
  }
}

/** Concatenates tables (one per generated file) as an image holds them. */
export function encodeSourceMapTables(tables: readonly Uint8Array[]): Uint8Array {
  const padded = (n: number) => (n + 3) & ~3;
  const out = new Uint8Array(tables.reduce((sum, t) => sum + padded(t.length), 0));
  let at = 0;
  for (const table of tables) {
    out.set(table, at);
    at += padded(table.length);
  }
  return out;
}

function mapFrames(stack: string, tableFor: (file: string) => SourceMapTable | null): string {
  const lines = stack.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i]!;
    if (!text.includes(" at ")) continue;
    const m = FRAME_WITH_NAME.exec(text) ?? FRAME_BARE.exec(text);
    if (m === null) continue;
    const [, prefix, name, file, lineText, columnText] = m;
    const table = tableFor(file!);
    if (table === null) continue;
    const pos = table.lookup(Number(lineText), columnText === undefined ? 1 : Number(columnText));
    if (pos === null) continue;
    const location = `${pos.source}:${pos.line}:${pos.column}`;
    lines[i] = name === undefined || name === "" ? `${prefix}${location}` : `${prefix}${name} (${location})`;
  }
  return lines.join("\n");
}

/** `    at name (file:line[:col])` */
const FRAME_WITH_NAME = /^(\s*at )(.*) \((.+?):(\d+)(?::(\d+))?\)$/;
/** `    at file:line[:col]` */
const FRAME_BARE = /^(\s*at )()(\S.*?):(\d+)(?::(\d+))?$/;
