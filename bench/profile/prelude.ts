// Installs `__toritoNative` before kernel/hw.ts is evaluated: the natives the HTTP/TCP path
// uses in the guest, from qjs-prof (prof.c). Everything else stays "missing" and throws.
const p = (globalThis as { __profNative?: Record<string, unknown> }).__profNative;
if (!p) throw new Error("run under build/profile/qjs-prof (sh bench/profile/build.sh)");
// A virtual clock (1 µs per reading) keeps runs repeatable, so that instruction counts
// compare across versions; the harness times itself with the real clock.
let virtualMs = 1000;
(globalThis as Record<string, unknown>).__toritoNative = {
  now: () => (virtualMs += 0.001),
  epochMs: () => Date.now(),
  checksum: p.checksum,
  utf8Encode: p.utf8Encode,
  httpHead: p.httpHead,
  httpHeadEnd: p.httpHeadEnd,
  cmdline: () => "torito.ip=10.0.0.2/24",
  coreId: () => 0,
  coreCount: () => 1,
  imageFiles: () => (globalThis as { __profImage?: ArrayBuffer }).__profImage ?? null,
};
