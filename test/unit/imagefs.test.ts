// Files packed by the host (host/pack.ts) and read back by the guest's reader (kernel/fs/imagefs.ts).
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ImageFs } from "../../kernel/fs/imagefs.ts";
import { packDirectory } from "../../host/pack.ts";

test("a packed directory reads back byte for byte, with directories and stats", () => {
  const dir = mkdtempSync(join(tmpdir(), "torito-pack-"));
  try {
    mkdirSync(join(dir, "css"));
    mkdirSync(join(dir, "empty"));
    writeFileSync(join(dir, "index.html"), "<h1>hi</h1>\n");
    const big = new Uint8Array(100_000).map((_, i) => (i * 31) & 255);
    writeFileSync(join(dir, "css", "big.bin"), big);
    // enough files that the index's own length shifts the offsets it records
    for (let i = 0; i < 60; i++) writeFileSync(join(dir, `page-${i}.txt`), `page ${i}\n`.repeat(i + 1));
    const fs = new ImageFs(packDirectory(dir).slice().buffer);
    for (let i = 0; i < 60; i++) assert.equal(new TextDecoder().decode(fs.readFileSync(`page-${i}.txt`)), `page ${i}\n`.repeat(i + 1));
    assert.deepEqual(fs.readdirSync("/").slice(0, 3), ["css", "empty", "index.html"]);
    assert.deepEqual(fs.readdirSync("css"), ["big.bin"]);
    assert.deepEqual(fs.readdirSync("empty"), []);
    assert.equal(new TextDecoder().decode(fs.readFileSync("/index.html")), "<h1>hi</h1>\n");
    assert.deepEqual(fs.readFileSync("css/../css/big.bin"), big);
    assert.equal(fs.statSync("css/big.bin").size, 100_000);
    assert.ok(fs.statSync("css").isDirectory());
    assert.ok(fs.statSync("/").isDirectory());
    assert.throws(() => fs.readFileSync("missing"), /ENOENT/);
    assert.throws(() => fs.readFileSync("css"), /EISDIR/);
    assert.throws(() => fs.readdirSync("index.html"), /ENOTDIR/);
    // ".." never escapes the mount
    assert.equal(new TextDecoder().decode(fs.readFileSync("../../index.html")), "<h1>hi</h1>\n");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("corrupt blobs are refused with a clear error", () => {
  assert.throws(() => new ImageFs(new ArrayBuffer(8)), /bad magic/);
  const dir = mkdtempSync(join(tmpdir(), "torito-pack-"));
  try {
    writeFileSync(join(dir, "a.txt"), "a");
    const blob = packDirectory(dir).slice();
    new DataView(blob.buffer).setUint32(8, 1 << 30, true);
    assert.throws(() => new ImageFs(blob.buffer), /index runs past the end/);
    symlinkSync("/etc/passwd", join(dir, "link"));
    assert.throws(() => packDirectory(dir), /symbolic links are not packed/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("through the VFS, the image's stats are shared, frozen and the same as before", async () => {
  const { mount, stat, statSync } = await import("../../kernel/fs/vfs.ts");
  const dir = mkdtempSync(join(tmpdir(), "torito-pack-"));
  try {
    mkdirSync(join(dir, "sub"));
    writeFileSync(join(dir, "a.txt"), "hello\n");
    mount("/shared-stats", new ImageFs(packDirectory(dir).slice().buffer));
    const s = statSync("/shared-stats/a.txt");
    assert.equal(s.size, 6);
    assert.ok(s.isFile() && !s.isDirectory() && !s.isSymbolicLink());
    assert.equal(s.mode, 0o100444);
    assert.ok(s.mtimeMs > 0);
    assert.ok(s.mtime instanceof Date);
    assert.equal(s.mtime.getTime(), s.mtimeMs);
    // one answer per path (the image never changes), which no caller can change for another
    assert.equal(statSync("/shared-stats/a.txt"), s);
    assert.equal(await stat("/shared-stats/a.txt"), s);
    assert.ok(Object.isFrozen(s));
    assert.throws(() => { (s as { size: number }).size = 0; }, TypeError);
    s.mtime.setTime(0); // each read of mtime is a Date of its own
    assert.equal(s.mtime.getTime(), s.mtimeMs);
    assert.notEqual(s.mtimeMs, 0);
    const d = statSync("/shared-stats/sub");
    assert.ok(d.isDirectory() && !d.isFile());
    assert.ok(statSync("/shared-stats/./sub/").isDirectory());
    assert.throws(() => statSync("/shared-stats/missing"), /ENOENT: no such file or directory, stat '\/shared-stats\/missing'/);
    await assert.rejects(stat("/shared-stats/missing"), /ENOENT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
