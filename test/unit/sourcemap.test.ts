import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { TraceMap, originalPositionFor } from "@jridgewell/trace-mapping";
import { build } from "esbuild";
import { encodeSourceMapTable, encodeSourceMapTables, SourceMaps, SourceMapTable, type RawSourceMap } from "../../kernel/sourcemap.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const outDir = path.join(root, "build", "test-sourcemap");

async function bundle(minify: boolean): Promise<{ code: string; map: RawSourceMap }> {
  const result = await build({
    entryPoints: [path.join(here, "fixtures", "main.ts")],
    bundle: true,
    format: "esm",
    target: "es2022",
    sourcemap: "external",
    minify,
    write: false,
    outfile: path.join(outDir, "bundle.js"),
    logLevel: "silent",
  });
  const code = result.outputFiles.find((f) => f.path.endsWith(".js"))!.text;
  const map = JSON.parse(result.outputFiles.find((f) => f.path.endsWith(".map"))!.text) as RawSourceMap;
  return { code, map };
}

for (const minify of [false, true]) {
  test(`lookup agrees with trace-mapping at every generated position (minify=${minify})`, async () => {
    const { code, map } = await bundle(minify);
    const table = new SourceMapTable(encodeSourceMapTable(map, { mapDir: outDir, baseDir: root, file: "bundle.js" }));
    const tracer = new TraceMap(map as ConstructorParameters<typeof TraceMap>[0]);
    const lines = code.split("\n");
    let mapped = 0;
    for (let l = 0; l < lines.length; l++) {
      for (let c = 0; c <= lines[l]!.length; c++) {
        const expected = originalPositionFor(tracer, { line: l + 1, column: c });
        const actual = table.lookup(l + 1, c + 1);
        if (expected.source === null) {
          assert.equal(actual, null, `${l + 1}:${c + 1}`);
          continue;
        }
        mapped++;
        assert.deepEqual(actual, {
          source: path.relative(root, path.resolve(outDir, expected.source)),
          line: expected.line,
          column: expected.column! + 1,
        }, `${l + 1}:${c + 1}`);
      }
    }
    assert.ok(mapped > 100, "the fixture produced mapped positions");
    assert.equal(table.lookup(0, 1), null);
    assert.equal(table.lookup(lines.length + 5, 1), null);
  });
}

test("sources are stored relative to the base directory", async () => {
  const { map } = await bundle(false);
  const table = new SourceMapTable(encodeSourceMapTable(map, { mapDir: outDir, baseDir: root }));
  assert.deepEqual([...table.sources].sort(), ["test/unit/fixtures/crash.ts", "test/unit/fixtures/main.ts"]);
});

test("mapStack rewrites QuickJS frames and leaves native and foreign frames alone", async () => {
  const { code, map } = await bundle(false);
  const table = new SourceMapTable(encodeSourceMapTable(map, { mapDir: outDir, baseDir: root, file: "bundle.js" }));
  const lines = code.split("\n");
  const throwLine = lines.findIndex((l) => l.includes("throw new Error")) + 1;
  const throwColumn = lines[throwLine - 1]!.indexOf("new Error") + 1;
  const callLine = lines.findIndex((l) => /^\s*if \(mode === "crash"\)/.test(l)) + 1;
  const callColumn = lines[callLine - 1]!.indexOf("crash(2)") + 1;
  const stack = [
    `    at crash (bundle.js:${throwLine}:${throwColumn})`,
    `    at map (native)`,
    `    at main (/some/dir/bundle.js:${callLine}:${callColumn})`,
    `    at other (other.js:1:1)`,
    `    at bundle.js:${callLine}`,
    "",
  ].join("\n");
  assert.equal(table.mapStack(stack), [
    "    at crash (test/unit/fixtures/crash.ts:21:9)",
    "    at map (native)",
    "    at main (test/unit/fixtures/main.ts:7:25)",
    "    at other (other.js:1:1)",
    `    at ${table.lookup(callLine, 1)!.source}:${table.lookup(callLine, 1)!.line}:${table.lookup(callLine, 1)!.column}`,
    "",
  ].join("\n"));
});

test("a table without a file name maps frames of any file; junk is rejected", async () => {
  const { map } = await bundle(false);
  const table = new SourceMapTable(encodeSourceMapTable(map));
  assert.equal(table.file, "");
  assert.throws(() => new SourceMapTable(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]).buffer), /not a Torito source map table/);
  assert.throws(() => encodeSourceMapTable({ ...map, version: 2 }), /version/);
});

test("segments without a source (unmapped ranges) look up as null", () => {
  // Line 1: col 0 mapped to a.ts 1:1, col 5 unmapped, col 10 mapped to a.ts 3:0.
  const map: RawSourceMap = { version: 3, sources: ["a.ts"], mappings: "AAAA,K,KAEA", names: [] };
  const table = new SourceMapTable(encodeSourceMapTable(map));
  assert.deepEqual(table.lookup(1, 1), { source: "a.ts", line: 1, column: 1 });
  assert.equal(table.lookup(1, 7), null);
  assert.deepEqual(table.lookup(1, 12), { source: "a.ts", line: 3, column: 1 });
  assert.equal(table.lookup(2, 1), null);
});

test("an image's tables (the entry's and each chunk's) map each frame by its file; a cut table is refused", () => {
  // app.js line 1 → main.ts 1:1 (then an unmapped segment: the table is 65 bytes, padded); chunk-Z.js line 1 → lazy.ts 5:1
  const app = encodeSourceMapTable({ version: 3, sources: ["main.ts"], mappings: "AAAA,C", names: [] }, { file: "app.js" });
  const chunk = encodeSourceMapTable({ version: 3, sources: ["lazy.ts"], mappings: "AAIA", names: [] }, { file: "chunk-Z.js" });
  const both = encodeSourceMapTables([app, chunk]);
  assert.equal(app.length % 4, 1);
  assert.equal(both.length, app.length + 3 + chunk.length);
  const maps = new SourceMaps(both);
  assert.deepEqual(maps.tables.map((t) => t.file), ["app.js", "chunk-Z.js"]);
  assert.equal(maps.forFile("other.js"), null);
  assert.equal(maps.mapStack([
    "Error: x",
    "    at lazy (chunk-Z.js:1:1)",
    "    at main (app.js:1:1)",
    "    at other (other.js:1:1)",
  ].join("\n")), [
    "Error: x",
    "    at lazy (lazy.ts:5:1)",
    "    at main (main.ts:1:1)",
    "    at other (other.js:1:1)",
  ].join("\n"));
  assert.throws(() => new SourceMaps(both.subarray(0, both.length - 8)), /truncated Torito source map table/);
  assert.throws(() => new SourceMaps(new Uint8Array(0)), /no Torito source map table/);
});
