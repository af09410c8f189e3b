import assert from "node:assert/strict";
import { test } from "node:test";
import { parseCmdline, quoteArg, tokenize } from "../../kernel/cmdline.ts";

test("app args are what follows the first standalone --", () => {
  const c = parseCmdline("console=ttyS0 quiet -- serve --port 80 -- x");
  assert.deepEqual(c.kernel, ["console=ttyS0", "quiet"]);
  assert.deepEqual(c.args, ["serve", "--port", "80", "--", "x"]);
  assert.equal(c.options.get("console"), "ttyS0");
  assert.equal(c.options.get("quiet"), "");
});

test("no -- means no app args; a trailing -- gives an empty list", () => {
  assert.deepEqual(parseCmdline("a=1 b").args, []);
  assert.deepEqual(parseCmdline("a=1 --").args, []);
  assert.deepEqual(parseCmdline("").args, []);
  assert.deepEqual(parseCmdline("   ").kernel, []);
});

test("double-quoted args keep spaces and \\\" escapes", () => {
  const c = parseCmdline('k -- "hello world" "say \\"hi\\"" "back\\\\slash" plain "" "a"b');
  assert.deepEqual(c.args, ["hello world", 'say "hi"', "back\\slash", "plain", "", "ab"]);
});

test("a quoted -- is an ordinary argument", () => {
  const c = parseCmdline('k "--" x -- y');
  assert.deepEqual(c.kernel, ["k", "--", "x"]);
  assert.deepEqual(c.args, ["y"]);
});

test("virtio_mmio.device options QEMU appends after the app args stay kernel options", () => {
  const c = parseCmdline('console=ttyS0 -- a "virtio_mmio.device=quoted" virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=512@0xfeb00c00:11');
  assert.deepEqual(c.args, ["a", "virtio_mmio.device=quoted"]);
  assert.deepEqual(c.kernel, ["console=ttyS0", "virtio_mmio.device=512@0xfeb00e00:12", "virtio_mmio.device=512@0xfeb00c00:11"]);
});

test("tabs and repeated spaces separate tokens", () => {
  assert.deepEqual(tokenize("a \t b  c").map((t) => t.text), ["a", "b", "c"]);
});

test("quoteArg round-trips through the parser", () => {
  const args = ["simple", "with space", 'quote"inside', "back\\slash\\", "", "--", "ünï"];
  const line = `console=ttyS0 -- ${args.map(quoteArg).join(" ")}`;
  assert.deepEqual(parseCmdline(line).args, args);
});
