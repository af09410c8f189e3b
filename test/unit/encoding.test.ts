import assert from "node:assert/strict";
import { test } from "node:test";
import { TextDecoder, TextEncoder } from "../../kernel/encoding.ts";

const NodeEncoder = globalThis.TextEncoder;
const NodeDecoder = globalThis.TextDecoder;

function prng(seed: number): () => number {
  return () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
}

const STRINGS = [
  "", "hello", "héllo wörld", "日本語テキスト", "emoji 😀🎉 mixed", "\u0000\u007f\u0080\u07ff\u0800\uffff",
  "\ud83d\ude00", "lone high \ud800 end", "lone low \udc00 x", "\udc00\ud800", "\ud800", "a\ud83d", "\ud83d\ud83d\ude00",
  "\ufeffBOM first",
];

test("encode matches Node for BMP, astral and lone surrogates", () => {
  const ours = new TextEncoder();
  const node = new NodeEncoder();
  for (const s of STRINGS) assert.deepEqual(ours.encode(s), node.encode(s), JSON.stringify(s));
  assert.deepEqual(ours.encode(), new Uint8Array(0));
  assert.equal(ours.encoding, "utf-8");
});

test("encode matches Node on random UTF-16 including broken surrogates", () => {
  const random = prng(7);
  const ours = new TextEncoder();
  const node = new NodeEncoder();
  for (let n = 0; n < 500; n++) {
    const units: number[] = [];
    const len = Math.floor(random() * 20);
    for (let i = 0; i < len; i++) {
      const r = random();
      units.push(r < 0.3 ? Math.floor(random() * 128) : r < 0.6 ? 0xd800 + Math.floor(random() * 0x800) : Math.floor(random() * 0x10000));
    }
    const s = String.fromCharCode(...units);
    assert.deepEqual(ours.encode(s), node.encode(s));
  }
});

test("encodeInto never splits a character and reports read/written like Node", () => {
  const ours = new TextEncoder();
  const node = new NodeEncoder();
  for (const s of STRINGS) {
    for (let size = 0; size <= 12; size++) {
      const a = new Uint8Array(size);
      const b = new Uint8Array(size);
      assert.deepEqual(ours.encodeInto(s, a), node.encodeInto(s, b), `${JSON.stringify(s)} into ${size}`);
      assert.deepEqual(a, b);
    }
  }
});

// Malformed UTF-8 vectors (Markus Kuhn's stress test and WHATWG examples).
const MALFORMED: number[][] = [
  [0x80], [0xbf], [0x80, 0xbf, 0x80], [0xc0, 0x80], [0xc1, 0xbf], [0xc2], [0xc2, 0x41], [0xe0, 0x80, 0x80],
  [0xe0, 0xa0], [0xe0, 0xa0, 0x41], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf], [0xed, 0x9f, 0xbf],
  [0xef, 0xbf, 0xbe], [0xf0, 0x80, 0x80, 0x80], [0xf0, 0x90, 0x80], [0xf4, 0x90, 0x80, 0x80],
  [0xf4, 0x8f, 0xbf, 0xbf], [0xf5, 0x80, 0x80, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xfe], [0xff],
  [0xfc, 0x84, 0x80, 0x80, 0x80, 0x80], [0x61, 0xf1, 0x80, 0x80, 0xe1, 0x80, 0xc2, 0x62, 0x80, 0x63, 0x80, 0xbf, 0x64],
  [0xe1, 0x80], [0xf1, 0x80, 0x80], [0xef, 0xbb, 0xbf], [0xef, 0xbb, 0xbf, 0xef, 0xbb, 0xbf, 0x41], [0xef, 0xbb],
];

test("decode replaces malformed sequences with U+FFFD exactly like Node", () => {
  for (const bytes of MALFORMED) {
    const input = new Uint8Array(bytes);
    assert.equal(new TextDecoder().decode(input), new NodeDecoder().decode(input), bytes.join(","));
    assert.equal(
      new TextDecoder("utf-8", { ignoreBOM: true }).decode(input),
      new NodeDecoder("utf-8", { ignoreBOM: true }).decode(input),
      `ignoreBOM ${bytes.join(",")}`,
    );
  }
});

test("decode matches Node on random bytes, whole and streamed at every split", () => {
  const random = prng(11);
  for (let n = 0; n < 400; n++) {
    const len = Math.floor(random() * 16);
    const bytes = new Uint8Array(len);
    for (let i = 0; i < len; i++) {
      const r = random();
      bytes[i] = r < 0.3 ? Math.floor(random() * 128) : r < 0.5 ? 0x80 + Math.floor(random() * 64) : 0xc0 + Math.floor(random() * 64);
    }
    const expected = new NodeDecoder().decode(bytes);
    assert.equal(new TextDecoder().decode(bytes), expected);
    for (let cut = 0; cut <= len; cut++) {
      const d = new TextDecoder();
      const streamed = d.decode(bytes.subarray(0, cut), { stream: true }) + d.decode(bytes.subarray(cut));
      assert.equal(streamed, expected, `split at ${cut} of ${Array.from(bytes).join(",")}`);
    }
  }
});

test("streaming byte by byte decodes astral characters split across calls", () => {
  const text = "a😀b€c\u00e9";
  const bytes = new NodeEncoder().encode(text);
  const d = new TextDecoder();
  let out = "";
  for (const b of bytes) out += d.decode(new Uint8Array([b]), { stream: true });
  out += d.decode();
  assert.equal(out, text);
});

test("a pending sequence at the end of a non-streamed call becomes U+FFFD and the decoder resets", () => {
  const d = new TextDecoder();
  assert.equal(d.decode(new Uint8Array([0xe2, 0x82]), { stream: true }), "");
  assert.equal(d.decode(), "\ufffd");
  assert.equal(d.decode(new Uint8Array([0x41])), "A");
});

test("fatal mode throws TypeError on malformed input and accepts valid input", () => {
  const d = new TextDecoder("utf-8", { fatal: true });
  assert.equal(d.fatal, true);
  for (const bytes of MALFORMED) {
    const input = new Uint8Array(bytes);
    let nodeThrew = false;
    try {
      new NodeDecoder("utf-8", { fatal: true }).decode(input);
    } catch {
      nodeThrew = true;
    }
    if (nodeThrew) assert.throws(() => d.decode(input), TypeError, bytes.join(","));
    else assert.equal(d.decode(input), new NodeDecoder("utf-8", { fatal: true }).decode(input));
  }
  assert.equal(d.decode(new Uint8Array([0xe2, 0x82, 0xac])), "€");
});

test("BOM is stripped once per stream unless ignoreBOM", () => {
  const bom = [0xef, 0xbb, 0xbf];
  const d = new TextDecoder();
  assert.equal(d.decode(new Uint8Array([...bom, 0x41])), "A");
  assert.equal(d.decode(new Uint8Array([...bom, 0x41])), "A", "a new stream strips again");
  assert.equal(d.decode(new Uint8Array([0xef]), { stream: true }) + d.decode(new Uint8Array([0xbb, 0xbf, 0x42])), "B");
  assert.equal(d.decode(new Uint8Array([0x41]), { stream: true }) + d.decode(new Uint8Array([...bom])), "A\ufeff");
  assert.equal(new TextDecoder("utf-8", { ignoreBOM: true }).decode(new Uint8Array([...bom])), "\ufeff");
});

test("decode accepts ArrayBuffer, DataView and other views; labels other than UTF-8 throw", () => {
  const bytes = new NodeEncoder().encode("héllo");
  const d = new TextDecoder("UTF8 ");
  assert.equal(d.encoding, "utf-8");
  assert.equal(d.decode(new Uint8Array(bytes).buffer), "héllo");
  assert.equal(d.decode(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)), "héllo");
  assert.equal(d.decode(undefined), "");
  assert.throws(() => new TextDecoder("latin1"), RangeError);
  assert.throws(() => d.decode("text" as unknown as Uint8Array), TypeError);
});

test("large inputs (> one chunk) decode correctly", () => {
  const text = "ascii-".repeat(3000) + "ünïcödé-😀".repeat(2000);
  const bytes = new NodeEncoder().encode(text);
  assert.equal(new TextDecoder().decode(bytes), text);
  assert.deepEqual(new TextEncoder().encode(text), bytes);
});
