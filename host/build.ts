/**
 * `torito build`: app.ts → ES modules (the entry: kernel first, then the app; a chunk per
 * module reached only by dynamic import()) → QuickJS bytecode in a module table → linked
 * with the platform into a PVH ELF image, with a source map table per module beside it.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { BuildFailure, Message, Plugin } from "esbuild";
import { encodeSourceMapTable, encodeSourceMapTables } from "../kernel/sourcemap.ts";
import { packDirectory } from "./pack.ts";
import { ToolError, UsageError } from "./run.ts";

const run = promisify(execFile);

/** Finds the repository root: the nearest ancestor of `from` with a package.json named "torito". */
export function repoRoot(from: string = fileURLToPath(import.meta.url)): string {
  for (let dir = dirname(from); ; dir = dirname(dir)) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "torito") return dir;
      } catch {
        // unreadable package.json: keep looking
      }
    }
    if (dirname(dir) === dir) throw new Error(`cannot find the torito repository above ${from}`);
  }
}

/** Inputs of `buildImage`. Relative paths are resolved against `cwd` (default process.cwd()). */
export interface BuildOptions {
  entry: string;
  output: string;
  cwd?: string;
  repo?: string;
  /** A directory packed into the image, read-only at /app in the guest. */
  files?: string;
  /** Called with progress lines (step timings, image size) when set. */
  log?: (line: string) => void;
}

/** Milliseconds spent in each build step. */
export interface BuildTimings {
  bundle: number;
  bytecode: number;
  sourcemap: number;
  link: number;
  total: number;
}

/** What `buildImage` produced. */
export interface BuildResult {
  output: string;
  imageBytes: number;
  bundleBytes: number;
  bytecodeBytes: number;
  /** ES modules in the image: the entry and the chunks split off for dynamic import(). */
  modules: number;
  sourceMapBytes: number;
  timings: BuildTimings;
}

/** One generated JavaScript file kept in memory, with its (version 3) source map. */
export interface Bundle {
  code: string;
  map: SourceMapV3;
}

/** One ES module of the bundle: the entry ("app.js") or a chunk split off for a dynamic import(). */
export interface BundleFile extends Bundle {
  /** The file name ("app.js", "chunk-HASH.js"): its module name in the image and in stack frames. */
  name: string;
}

/** Module 0's file name: it imports the kernel's start-up, then the app (see bundleApp). */
export const ENTRY_FILE = "app.js";
/** The kernel's start-up (kernel/init.ts) and the app, as esbuild names their entry points. */
const KERNEL_FILE = "kernel.js";
const APP_FILE = "main.js";

/** The subset of a version 3 source map that Torito uses. */
export interface SourceMapV3 {
  version: 3;
  sources: string[];
  names: string[];
  mappings: string;
  sourcesContent?: (string | null)[];
  file?: string;
  sourceRoot?: string;
}

/** Paths of the platform artefacts the build needs (produced by `torito setup`). */
export function platformPaths(repo: string) {
  return {
    qjsc: join(repo, "build/quickjs/host/qjsc"),
    linkScript: join(repo, "build/platform/link.ld"),
    linkInputs: join(repo, "build/platform/link.txt"),
    layout: join(repo, "build/platform/layout.txt"),
    kernelInit: join(repo, "kernel/init.ts"),
    kernelApi: join(repo, "kernel/api.ts"),
  };
}

const PLATFORM_NOT_BUILT = "platform not built: run `npx torito setup`";

/** Formats esbuild errors as compact `file:line:col: text` lines (at most 10). */
export function formatEsbuildErrors(errors: readonly Message[]): string[] {
  const lines = errors.slice(0, 10).map((m) => {
    const where = m.location ? `${m.location.file}:${m.location.line}:${m.location.column + 1}: ` : "";
    return `${where}${m.text}`;
  });
  if (errors.length > 10) lines.push(`... and ${errors.length - 10} more errors`);
  return lines;
}

/** Error thrown for esbuild failures: one line per esbuild error. */
export class BundleError extends ToolError {
  constructor(readonly lines: string[]) {
    super(lines.join("\n"));
  }
}

/**
 * esbuild plugin: "torito" resolves to kernel/api.ts, and "node:NAME" to kernel/node/NAME.ts
 * (the kernel's Node subset); any other node: module is a build error, never an external.
 */
function toritoResolvePlugin(repo: string): Plugin {
  const { kernelApi } = platformPaths(repo);
  return {
    name: "torito-resolve",
    setup(build) {
      build.onResolve({ filter: /^torito$/ }, () => ({ path: kernelApi }));
      build.onResolve({ filter: /^node:/ }, (args) => {
        const name = args.path.slice("node:".length);
        const shim = join(repo, "kernel/node", `${name}.ts`);
        if (/^[\w/]+$/.test(name) && existsSync(shim)) return { path: shim };
        return { errors: [{ text: `"${args.path}" is not available in torito (no kernel/node/${name}.ts)` }] };
      });
    },
  };
}

/**
 * Bundles the kernel and the app into ES modules in memory, module 0 first. The kernel's
 * start-up (kernel/init.ts, "kernel.js") and the app ("main.js") are two entry points, and
 * module 0 ("app.js") imports the one, then the other: the kernel's start-up and everything it
 * imports run before any of the app's modules, which may use what it installs (console,
 * TextEncoder, timers...) at their top level. A module reached only through a dynamic
 * `import()` (the kernel's file system drivers, an app's own lazy modules) is a chunk of its
 * own, read from the image when first imported; code two of these share is a chunk they both
 * import, read with the first. Source map `sources` are made relative to `cwd`.
 */
export async function bundleApp(entry: string, repo: string, cwd: string): Promise<BundleFile[]> {
  const esbuild = await import("esbuild");
  const paths = platformPaths(repo);
  let result;
  try {
    result = await esbuild.build({
      // An entry point is kept whole, even inside this package, whose package.json "sideEffects"
      // list would otherwise let esbuild drop an app outside the listed folders.
      entryPoints: [{ in: paths.kernelInit, out: KERNEL_FILE.replace(/\.js$/, "") }, { in: entry, out: APP_FILE.replace(/\.js$/, "") }],
      bundle: true,
      format: "esm",
      splitting: true,
      target: "es2022",
      platform: "neutral",
      sourcemap: "external",
      sourcesContent: false,
      minify: false,
      legalComments: "none",
      charset: "utf8",
      write: false,
      outdir: cwd,
      chunkNames: "chunk-[hash]",
      absWorkingDir: cwd,
      logLevel: "silent",
      plugins: [toritoResolvePlugin(repo)],
    });
  } catch (e) {
    const errors = (e as BuildFailure).errors;
    if (Array.isArray(errors)) throw new BundleError(formatEsbuildErrors(errors));
    throw e;
  }
  const files: BundleFile[] = [];
  for (const js of result.outputFiles) {
    if (!js.path.endsWith(".js")) continue;
    const mapFile = result.outputFiles.find((f) => f.path === `${js.path}.map`);
    if (!mapFile) throw new ToolError(`esbuild produced no source map for ${basename(js.path)}`);
    const map = JSON.parse(mapFile.text) as SourceMapV3;
    // esbuild writes sources relative to the output file's directory, which is cwd here;
    // normalise anyway so the table never depends on esbuild's choice.
    const outDir = dirname(mapFile.path);
    map.sources = map.sources.map((s) => relative(cwd, resolve(outDir, map.sourceRoot ?? "", s)) || s);
    delete map.sourceRoot;
    map.file = basename(js.path);
    files.push({ name: map.file, code: js.text, map });
  }
  if (!files.some((f) => f.name === KERNEL_FILE) || !files.some((f) => f.name === APP_FILE)) throw new ToolError("esbuild produced no output");
  files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const first: BundleFile = {
    name: ENTRY_FILE,
    code: `import "./${KERNEL_FILE}";\nimport "./${APP_FILE}";\n`,
    map: { version: 3, sources: [], names: [], mappings: "", file: ENTRY_FILE },
  };
  return [first, ...files];
}

/**
 * Rewrites the bundle's `let`/`const` bindings as `var`s (SWC's block-scoping pass, nothing
 * else: every other feature stays as esbuild wrote it) and composes the source maps.
 *
 * Why: QuickJS compiles every access to a lexical binding to a checked opcode (a test for the
 * temporal dead zone, with no one-byte short form and no fused forms such as `inc_loc`), and
 * re-initialises a block's lexical bindings on every entry into the block, in loops on every
 * iteration. The same code with `var`s costs ~5 % fewer instructions per request on the web
 * server's path (bench/profile, `run.ts 30 20 30 --count --timestamps`). A loop whose closures
 * capture a per-iteration binding keeps its semantics through a function per iteration.
 * What is lost: a read before initialisation yields `undefined` instead of a ReferenceError.
 */
export async function lowerBlockScopes(bundle: Bundle): Promise<Bundle> {
  const swc = await import("@swc/core");
  const out = await swc.transform(bundle.code, {
    filename: bundle.map.file ?? ENTRY_FILE,
    inputSourceMap: JSON.stringify(bundle.map),
    sourceMaps: true,
    isModule: true,
    swcrc: false,
    configFile: false,
    jsc: { parser: { syntax: "ecmascript" }, preserveAllComments: true },
    // every other transform is unneeded for a target this recent
    env: { targets: { chrome: "120" }, include: ["transform-block-scoping"] },
  });
  if (out.map === undefined) throw new ToolError("swc produced no source map");
  const map = JSON.parse(out.map) as SourceMapV3;
  delete map.sourcesContent;
  map.file = bundle.map.file;
  return { code: out.code, map };
}

/**
 * Every byte array in C source emitted by `qjsc -c` (`const uint8_t name[N] = { 0x.., ... };`),
 * by C name; an array whose declared length is not what it holds maps to that error.
 */
export function parseQjscArrays(cSource: string): Map<string, Uint8Array | ToolError> {
  const arrays = new Map<string, Uint8Array | ToolError>();
  const start = /\b(\w+)\s*\[\s*(\d*)\s*\]\s*=\s*\{/g;
  for (let m = start.exec(cSource); m !== null; m = start.exec(cSource)) {
    const name = m[1]!;
    const bodyStart = m.index + m[0].length;
    const bodyEnd = cSource.indexOf("}", bodyStart);
    if (bodyEnd < 0) {
      arrays.set(name, new ToolError(`qjsc output: unterminated array '${name}'`));
      break;
    }
    const hex = cSource.slice(bodyStart, bodyEnd).match(/0x[0-9a-fA-F]{1,2}/g) ?? [];
    const bytes = Uint8Array.from(hex, (h) => parseInt(h, 16));
    const declared = m[2] ? Number(m[2]) : bytes.length;
    arrays.set(name, declared === bytes.length ? bytes : new ToolError(`qjsc output: '${name}' declares ${declared} bytes but holds ${bytes.length}`));
    start.lastIndex = bodyEnd;
  }
  return arrays;
}

/** The C name qjsc gives a module compiled from `file` (its get_c_name()): "chunk-AB2.js" → "qjsc_chunk_AB2". */
export function qjscName(file: string): string {
  return `qjsc_${basename(file).replace(/\.[^.]*$/, "").replace(/[^0-9A-Za-z]/g, "_")}`;
}

/**
 * Compiles the bundle's modules to bytecode with qjsc, in `work` (where the files are). qjsc
 * also compiles every module a file imports statically, so one run on the entry yields the
 * entry and the chunks it imports; only chunks reached by dynamic import() alone need runs
 * of their own. Returns the bytecode of each file, in the bundle's order.
 */
export async function compileModules(qjsc: string, files: readonly BundleFile[], work: string): Promise<Uint8Array[]> {
  const compiled = new Map<string, Uint8Array | ToolError>();
  for (const file of files) {
    if (compiled.has(qjscName(file.name))) continue;
    const out = `${file.name}.c`;
    await tool(qjsc, ["-c", "-m", "-o", out, file.name], work, "qjsc");
    for (const [name, bytes] of parseQjscArrays(readFileSync(join(work, out), "utf8"))) {
      if (!compiled.has(name)) compiled.set(name, bytes);
    }
  }
  return files.map((file) => {
    const bytes = compiled.get(qjscName(file.name));
    if (bytes instanceof ToolError) throw bytes;
    if (!bytes) throw new ToolError(`qjsc output has no array '${qjscName(file.name)}' for ${file.name}`);
    return bytes;
  });
}

/**
 * The image's module table (platform/runtime/main.c reads it):
 *
 *   0   u32  magic "TJM1"
 *   4   u32  module count (module 0 is run at boot, read with every module it imports
 *            statically; a chunk reached only by import() is read when first imported)
 *   8   per module: u32 name offset, u32 name length, u32 bytecode offset, u32 bytecode length
 *       (offsets from the table's start; names are the module names imports resolve to)
 *   ..  the names (UTF-8), then each module's bytecode, 8-byte aligned
 *
 * All integers little-endian.
 */
export function encodeModuleTable(modules: readonly { name: string; bytecode: Uint8Array }[]): Uint8Array {
  const names = modules.map((m) => Buffer.from(m.name, "utf8"));
  const align = (n: number) => (n + 7) & ~7;
  let at = 8 + 16 * modules.length;
  const nameAt: number[] = [];
  for (const name of names) {
    nameAt.push(at);
    at += name.length;
  }
  const dataAt: number[] = [];
  for (const m of modules) {
    at = align(at);
    dataAt.push(at);
    at += m.bytecode.length;
  }
  const out = new Uint8Array(at);
  const view = new DataView(out.buffer);
  view.setUint32(0, MODULE_TABLE_MAGIC, true);
  view.setUint32(4, modules.length, true);
  modules.forEach((m, i) => {
    view.setUint32(8 + 16 * i, nameAt[i]!, true);
    view.setUint32(12 + 16 * i, names[i]!.length, true);
    view.setUint32(16 + 16 * i, dataAt[i]!, true);
    view.setUint32(20 + 16 * i, m.bytecode.length, true);
    out.set(names[i]!, nameAt[i]!);
    out.set(m.bytecode, dataAt[i]!);
  });
  return out;
}

const MODULE_TABLE_MAGIC = 0x314d4a54; // "TJM1" little-endian

/**
 * Encodes the source maps into the tables linked beside the bytecode (the kernel's compact
 * format, one table per generated file). Sources are already relative to the build's cwd;
 * each table carries its file's name, which stack frames in that file name.
 */
export function encodeSourceMap(files: readonly BundleFile[]): Uint8Array {
  return encodeSourceMapTables(files.map((f) => encodeSourceMapTable(f.map, { file: f.name })));
}

function gasString(path: string): string {
  return `"${path.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/**
 * The image layout the platform was built with (platform/include/torito/shared.h), as its
 * build wrote it to build/platform/layout.txt: cold data may fill [coldBase, runtimeBase),
 * and the platform's linker script refuses more.
 */
export function readLayout(repo: string): { coldBase: number; runtimeBase: number } {
  const { layout } = platformPaths(repo);
  const values = new Map(readFileSync(layout, "utf8").split("\n").map((l) => l.trim().split(/\s+/)).filter((f) => f.length === 2).map(([k, v]) => [k!, Number(v)]));
  const coldBase = values.get("cold_base"), runtimeBase = values.get("runtime_base");
  if (!Number.isInteger(coldBase) || !Number.isInteger(runtimeBase) || runtimeBase! < coldBase!) {
    throw new ToolError(`${layout}: no cold_base and runtime_base (rebuild the platform)`);
  }
  return { coldBase: coldBase!, runtimeBase: runtimeBase! };
}

/**
 * The assembly source that wraps the bytecode, the source map tables and the packed files in
 * `.rodata.torito_app`; with `coldSourceMap` the tables go to `.cold.torito_sourcemap`
 * instead (the platform places it below 2 MiB, off the memory the app touches as it runs).
 */
export function appAssembly(bytecodePath: string, sourceMapPath: string, filesPath?: string, coldSourceMap = false): string {
  const sourceMap = [
    `\t.balign 16`,
    `torito_app_sourcemap:`,
    `\t.incbin ${gasString(sourceMapPath)}`,
    `torito_app_sourcemap_end:`,
  ];
  return [
    `\t.section .rodata.torito_app,"a"`,
    `\t.balign 16`,
    `\t.globl torito_app_bytecode, torito_app_bytecode_end, torito_app_sourcemap, torito_app_sourcemap_end`,
    `\t.globl torito_app_files, torito_app_files_end`,
    `torito_app_bytecode:`,
    `\t.incbin ${gasString(bytecodePath)}`,
    `torito_app_bytecode_end:`,
    ...(coldSourceMap ? [] : sourceMap),
    `\t.balign 16`,
    `torito_app_files:`,
    ...(filesPath !== undefined ? [`\t.incbin ${gasString(filesPath)}`] : []),
    `torito_app_files_end:`,
    ...(coldSourceMap ? [`\t.section .cold.torito_sourcemap,"a"`, ...sourceMap] : []),
    `\t.section .note.GNU-stack,"",@progbits`,
    ``,
  ].join("\n");
}

/**
 * Reads build/platform/link.txt: one ld input per line (absolute or relative to the repo root),
 * or an ld option such as `--start-group`, passed as is; `#` starts a comment.
 */
export function readLinkInputs(repo: string): string[] {
  const { linkInputs } = platformPaths(repo);
  return readFileSync(linkInputs, "utf8")
    .split("\n")
    .map((l) => l.replace(/#.*/, "").trim())
    .filter((l) => l !== "")
    .map((l) => (l.startsWith("-") || isAbsolute(l) ? l : join(repo, l)));
}

async function tool(cmd: string, args: string[], cwd: string, what: string): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { cwd, maxBuffer: 256 * 1024 * 1024 });
    return stdout;
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === "ENOENT") throw new ToolError(`${what}: '${cmd}' not found`);
    const detail = (err.stderr ?? "").trim().split("\n").slice(0, 20).join("\n");
    throw new ToolError(`${what} failed${detail ? `:\n${detail}` : ""}`);
  }
}

/** Builds a bootable image from an app entry; throws UsageError / ToolError / BundleError. */
export async function buildImage(options: BuildOptions): Promise<BuildResult> {
  const t0 = performance.now();
  const cwd = options.cwd ?? process.cwd();
  const repo = options.repo ?? repoRoot();
  const entry = resolve(cwd, options.entry);
  const output = resolve(cwd, options.output);
  const paths = platformPaths(repo);

  if (!existsSync(entry) || !statSync(entry).isFile()) throw new UsageError(`entry '${options.entry}' not found`);
  for (const needed of [paths.qjsc, paths.linkScript, paths.linkInputs, paths.layout]) {
    if (!existsSync(needed)) throw new ToolError(PLATFORM_NOT_BUILT);
  }
  const linkInputs = readLinkInputs(repo);
  const layout = readLayout(repo);
  const missing = linkInputs.find((p) => !p.startsWith("-") && !existsSync(p));
  if (missing !== undefined) throw new ToolError(`${PLATFORM_NOT_BUILT} (missing ${relative(cwd, missing)})`);

  const work = mkdtempSync(join(tmpdir(), "torito-build-"));
  try {
    const files = await Promise.all((await bundleApp(entry, repo, cwd)).map(async (f) => ({ ...f, ...(await lowerBlockScopes(f)) })));
    const t1 = performance.now();

    for (const f of files) writeFileSync(join(work, f.name), f.code);
    const compiled = await compileModules(paths.qjsc, files, work);
    const bytecode = encodeModuleTable(files.map((f, i) => ({ name: f.name, bytecode: compiled[i]! })));
    writeFileSync(join(work, "app.jsbc"), bytecode);
    const t2 = performance.now();

    const table = encodeSourceMap(files);
    writeFileSync(join(work, "sourcemap.bin"), table);
    const t3 = performance.now();

    let filesPath: string | undefined;
    if (options.files !== undefined) {
      filesPath = join(work, "files.bin");
      writeFileSync(filesPath, packDirectory(resolve(cwd, options.files)));
    }
    writeFileSync(join(work, "app.S"), appAssembly(join(work, "app.jsbc"), join(work, "sourcemap.bin"), filesPath, table.length <= layout.runtimeBase - layout.coldBase));
    await tool("as", ["--64", "-o", "app.o", "app.S"], work, "as");
    mkdirSync(dirname(output), { recursive: true });
    await tool("ld", [
      "-nostdlib", "-static", "-z", "noexecstack", "-z", "max-page-size=4096",
      "-T", paths.linkScript, "-o", output, ...linkInputs, join(work, "app.o"),
    ], work, "ld");
    const t4 = performance.now();

    const result: BuildResult = {
      output,
      imageBytes: statSync(output).size,
      bundleBytes: files.reduce((sum, f) => sum + Buffer.byteLength(f.code), 0),
      modules: files.length,
      bytecodeBytes: bytecode.length,
      sourceMapBytes: table.length,
      timings: { bundle: t1 - t0, bytecode: t2 - t1, sourcemap: t3 - t2, link: t4 - t3, total: t4 - t0 },
    };
    if (options.log) {
      const ms = (n: number) => `${n.toFixed(0)} ms`;
      const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
      const tm = result.timings;
      options.log(`bundle ${ms(tm.bundle)} (${kib(result.bundleBytes)}), bytecode ${ms(tm.bytecode)} (${kib(result.bytecodeBytes)}${result.modules > 1 ? ` in ${result.modules} modules` : ""}), source map ${ms(tm.sourcemap)} (${kib(result.sourceMapBytes)}), link ${ms(tm.link)}`);
      options.log(`${relative(cwd, output) || output}: ${kib(result.imageBytes)} in ${ms(tm.total)}`);
    }
    return result;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
