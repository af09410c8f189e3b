import assert from "node:assert/strict";
import { test } from "node:test";
import util from "node:util";
import { format, inspect } from "../../kernel/inspect.ts";

class Point {
  constructor(public x: number, public y: number) {}
}
class Empty {}

function sample(): [string, unknown][] {
  const circular: Record<string, unknown> = { name: "root" };
  circular.self = circular;
  const nested: Record<string, unknown> = { a: { b: { c: { d: { e: 1 } } } } };
  const sparse = [1, , 3, , , 6]; // eslint-disable-line no-sparse-arrays
  const withExtra = Object.assign([1, 2], { extra: true });
  const nullProto = Object.assign(Object.create(null) as object, { k: 1 });
  const getters = Object.defineProperties({}, {
    g: { get: () => 1, enumerable: true },
    gs: { get: () => 1, set: () => undefined, enumerable: true },
    s: { set: () => undefined, enumerable: true },
  });
  return [
    ["string", "it's a string"],
    ["quotes", `both ' and "`],
    ["all quotes", "' \" `"],
    ["escapes", "tab\tnl\ncr\r\u0001\u007f\\"],
    ["numbers", [0, -0, 1.5, -3, NaN, Infinity, -Infinity, 1e21, 2 ** 53]],
    ["bigint", 123n],
    ["symbol", Symbol("tag")],
    ["misc", [undefined, null, true, false]],
    ["empty", [{}, [], new Map(), new Set(), new Empty(), new Uint8Array(0)]],
    ["object", { a: 1, b: "two", "needs-quotes": 3, [Symbol("s")]: 4, __proto__x: 5 }],
    ["class instance", new Point(1, 2)],
    ["nested depth", nested],
    ["circular", circular],
    ["long object", { alpha: "aaaaaaaaaaaa", beta: "bbbbbbbbbbbbbbb", gamma: "ccccccccccccc", delta: "ddddddddddddd", e: 1 }],
    ["array of numbers", Array.from({ length: 30 }, (_, i) => i * 7)],
    ["array of 200", Array.from({ length: 200 }, (_, i) => i)],
    ["array of strings", ["apple", "banana", "cherry", "date", "elderberry", "fig", "grape", "honeydew"]],
    ["array of objects", [{ a: 1 }, { b: 2 }, { c: [1, 2, 3] }]],
    ["sparse", sparse],
    ["array with extra key", withExtra],
    ["map", new Map<unknown, unknown>([["a", 1], [{ k: 1 }, [1, 2]]])],
    ["set", new Set([1, "two", [3]])],
    ["typed arrays", [new Uint8Array([1, 2, 3]), new Int16Array([-1, 2]), new Float64Array([1.5]), new BigInt64Array([1n])]],
    ["big typed array", new Uint8Array(300)],
    ["functions", [function named() {}, () => 1, async function af() {}, function* gen() {}, class K {}, class L extends Point {}]],
    ["date", new Date(0)],
    ["regexp", /ab+c/gi],
    ["null prototype", nullProto],
    ["getters", getters],
    ["boxed", [new Number(3), new String("ab"), new Boolean(false)]],
    ["array buffer", new Uint8Array([1, 2, 255]).buffer],
    ["multi-line string in object", { text: "first line\nsecond line is here and it is rather long to force split\n" }],
    ["deep arrays", [[[[1]]]]],
  ];
}

test("inspect matches util.inspect on common values", () => {
  for (const [name, value] of sample()) {
    assert.equal(inspect(value), util.inspect(value), name);
  }
});

test("inspect honours depth", () => {
  const value = { a: { b: { c: { d: {} } } } };
  assert.equal(inspect(value, { depth: 0 }), util.inspect(value, { depth: 0 }));
  assert.equal(inspect(value, { depth: Infinity }), util.inspect(value, { depth: Infinity }));
});

test("format handles printf directives like util.format", () => {
  const cases: unknown[][] = [
    ["plain"],
    ["%s is %d years", "Bob", 42],
    ["%i %f %d", "42.9px", "3.5", 10n],
    ["%j", { a: [1, 2] }],
    ["%o and %O", { a: 1 }, { b: { c: { d: { e: 1 } } } }],
    ["100%% sure %c styled", "color: red"],
    ["%s", { toString: () => "custom" }],
    ["%s", { a: 1 }],
    ["%s %s", "only one"],
    ["no directive", 1, "two", { three: 3 }],
    [1, 2, "three"],
    ["%d", -0],
    ["%s", 12345678901234567890n],
    ["%x unknown", 1],
    ["trailing %", 1],
  ];
  for (const args of cases) assert.equal(format(...args), util.format(...args), JSON.stringify(args, (_k, v) => typeof v === "bigint" ? `${v}n` : v));
});

test("errors print their stack, and cause as [cause]", () => {
  const inner = new TypeError("inner");
  inner.stack = "TypeError: inner\n    at g (/app/b.ts:2:3)";
  const err = new Error("outer", { cause: inner });
  err.stack = "Error: outer\n    at f (/app/a.ts:1:2)\n    at main (/app/a.ts:9:1)";
  assert.equal(inspect(err), util.inspect(err));
  const withProps = Object.assign(new RangeError("bad"), { code: "E_BAD" });
  withProps.stack = "RangeError: bad\n    at h (/app/c.ts:3:4)";
  assert.equal(inspect(withProps), util.inspect(withProps));
  assert.equal(inspect({ nested: withProps }), util.inspect({ nested: withProps }));
  const plain = new Error("no stack");
  plain.stack = undefined;
  assert.equal(inspect(plain), "[Error: no stack]");
});
