import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { installNativeForTests } from "../../kernel/hw.ts";
import { encodeSourceMapTable, type RawSourceMap } from "../../kernel/sourcemap.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const outDir = path.join(root, "build", "test-errors");

// The image's table, served through the fake hw before errors.ts first needs it.
const result = await build({
  entryPoints: [path.join(here, "fixtures", "main.ts")],
  bundle: true,
  format: "esm",
  sourcemap: "external",
  write: false,
  outfile: path.join(outDir, "bundle.js"),
  logLevel: "silent",
});
const code = result.outputFiles.find((f) => f.path.endsWith(".js"))!.text;
const map = JSON.parse(result.outputFiles.find((f) => f.path.endsWith(".map"))!.text) as RawSourceMap;
const tableBytes = encodeSourceMapTable(map, { mapDir: outDir, baseDir: root, file: "bundle.js" });
let sourceMapReads = 0;
installNativeForTests({
  sourceMap: () => {
    sourceMapReads++;
    return new Uint8Array(tableBytes).buffer;
  },
});
const { formatError } = await import("../../kernel/errors.ts");

const lines = code.split("\n");
const throwLine = lines.findIndex((l) => l.includes("throw new Error")) + 1;
const throwColumn = lines[throwLine - 1]!.indexOf("new Error") + 1;

/** An Error carrying a stack the way QuickJS writes it: frames only, no header. */
function quickjsError<E extends Error>(err: E, frames: string): E {
  Object.defineProperty(err, "stack", { value: frames, writable: true, configurable: true, enumerable: false });
  return err;
}

test("an Error prints name: message and its stack mapped to TypeScript", () => {
  const err = quickjsError(new Error("crashed at 15.71"), `    at crash (bundle.js:${throwLine}:${throwColumn})\n    at map (native)\n`);
  assert.equal(formatError(err), "Error: crashed at 15.71\n    at crash (test/unit/fixtures/crash.ts:21:9)\n    at map (native)");
  assert.equal(sourceMapReads, 1);
  formatError(err);
  assert.equal(sourceMapReads, 1, "the table is loaded once");
});

test("cause is shown as [cause] with its own mapped stack", () => {
  const cause = quickjsError(new TypeError("inner"), `    at crash (bundle.js:${throwLine}:${throwColumn})\n`);
  const err = quickjsError(new Error("outer", { cause }), "    at main (bundle.js:1:1)\n");
  const text = formatError(err);
  assert.match(text, /^Error: outer\n {4}at main \(.*\) \{\n {2}\[cause\]: TypeError: inner\n {6}at crash \(test\/unit\/fixtures\/crash\.ts:21:9\)\n\}$/);
});

test("AggregateError lists its errors", () => {
  const err = quickjsError(new AggregateError([new Error("one"), "two"], "many"), "    at f (bundle.js:1:1)\n");
  const text = formatError(err);
  assert.match(text, /^AggregateError: many\n/);
  assert.match(text, /\[errors\]: \[/);
  assert.match(text, /Error: one/);
  assert.match(text, /'two'/);
});

test("non-Error values are inspected (the runtime adds the \"Uncaught \" prefix)", () => {
  assert.equal(formatError(42), "42");
  assert.equal(formatError("text"), "'text'");
  assert.equal(formatError(undefined), "undefined");
  assert.equal(formatError({ code: 1, nested: { a: [1, 2] } }), "{ code: 1, nested: { a: [ 1, 2 ] } }");
  assert.equal(formatError(null), "null");
});

test("an Error without a stack prints in brackets", () => {
  const err = new RangeError("bad");
  err.stack = undefined;
  assert.equal(formatError(err), "[RangeError: bad]");
});

test("formatError never throws, whatever the value does", () => {
  const hostile = new Proxy({}, {
    get() { throw new Error("get"); },
    ownKeys() { throw new Error("ownKeys"); },
    getPrototypeOf() { throw new Error("proto"); },
    getOwnPropertyDescriptor() { throw new Error("descriptor"); },
  });
  assert.equal(typeof formatError(hostile), "string");
  const err = new Error("x");
  Object.defineProperty(err, "stack", { get() { throw new Error("stack"); } });
  Object.defineProperty(err, "name", { get() { throw new Error("name"); } });
  assert.equal(typeof formatError(err), "string");
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  assert.equal(typeof formatError(revoked.proxy), "string");
});
