// The fw_cfg file directory parser (kernel/devices/fwcfg.ts), on bytes laid out as QEMU's
// docs/specs/fw_cfg.rst gives them: be32 count, then { be32 size, be16 select, u16, char name[56] }.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseFwCfgDirectory } from "../../kernel/devices/fwcfg.ts";

function directory(count: number, files: { name: string; size: number; selector: number }[], pad = 0): Uint8Array {
  const bytes = new Uint8Array(4 + files.length * 64 + pad);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, count);
  files.forEach((f, i) => {
    const at = 4 + i * 64;
    view.setUint32(at, f.size);
    view.setUint16(at + 4, f.selector);
    for (let j = 0; j < f.name.length; j++) bytes[at + 8 + j] = f.name.charCodeAt(j);
  });
  return bytes;
}

test("reads names, sizes and selectors (big-endian), ignoring the zero padding after the entries", () => {
  const files = [{ name: "etc/e820", size: 40, selector: 0x20 }, { name: "opt/torito/seed", size: 64, selector: 0x21 }];
  assert.deepEqual(parseFwCfgDirectory(directory(2, files, 640)), files);
});

test("a name filling all 56 bytes has no terminator and is kept whole", () => {
  const name = "x".repeat(56);
  assert.deepEqual(parseFwCfgDirectory(directory(1, [{ name, size: 1, selector: 0x22 }])), [{ name, size: 1, selector: 0x22 }]);
});

test("a count larger than the bytes read is cut to the entries present; short input gives nothing", () => {
  const files = [{ name: "a", size: 1, selector: 0x20 }];
  assert.deepEqual(parseFwCfgDirectory(directory(1000, files)), files);
  assert.deepEqual(parseFwCfgDirectory(new Uint8Array(3)), []);
  assert.deepEqual(parseFwCfgDirectory(directory(0, [], 64)), []);
});
