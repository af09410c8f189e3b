// The WebServer appliance's handler (examples/static-web-server) over a file system whose
// files change: what it keeps between requests (parsed URLs, file facts, small files' bytes)
// must follow the file's size and mtime, and big files are never kept.
import assert from "node:assert/strict";
import { test } from "node:test";
import { serveDirectory } from "../../examples/static-web-server/static.ts";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packDirectory } from "../../host/pack.ts";
import { ImageFs } from "../../kernel/fs/imagefs.ts";
import { mount, readFileSync, statSync } from "../../kernel/fs/vfs.ts";
import { Response } from "../../kernel/web/response.ts";
import { FsError } from "../../kernel/fs/vfs.ts";
import type { FileSystem, FsStat } from "../../kernel/fs/types.ts";
import { Request } from "../../kernel/web/request.ts";

class ChangingFs {
  readonly readOnly = true;
  readonly files = new Map<string, { bytes: Uint8Array; mtimeMs: number }>();
  reads = 0;
  async stat(path: string): Promise<FsStat> {
    const f = this.files.get(path);
    const dir = path === "";
    if (!f && !dir) throw new FsError("ENOENT", "no such file or directory", path);
    return { size: f?.bytes.length ?? 0, mtimeMs: f?.mtimeMs ?? 0, mode: 0, ino: 0, isFile: () => !dir, isDirectory: () => dir };
  }
  async readFileDirect(path: string): Promise<Uint8Array> {
    this.reads++;
    const f = this.files.get(path);
    if (!f) throw new FsError("ENOENT", "no such file or directory", path);
    return f.bytes.slice();
  }
  async readdir(): Promise<string[]> { return [...this.files.keys()]; }
  async open(): Promise<never> { throw new FsError("EROFS", "read-only file system"); }
  async mkdir(): Promise<void> {}
  async unlink(): Promise<void> {}
  async rmdir(): Promise<void> {}
  async rename(): Promise<void> {}
  async syncAll(): Promise<void> {}
}

const fs = new ChangingFs();
mount("/changing", fs as unknown as FileSystem);
const handler = serveDirectory("/changing");
const get = async (path: string) => {
  const r = await handler(new Request(`http://x${path}`));
  return { status: r.status, etag: r.headers.get("etag"), text: new TextDecoder().decode(await r.bytes()) };
};

test("a small file is read once while its size and mtime stay, and again when either changes", async () => {
  fs.files.set("a.txt", { bytes: new TextEncoder().encode("one"), mtimeMs: 1000 });
  const first = await get("/a.txt");
  assert.deepEqual([first.status, first.text], [200, "one"]);
  const readsAfterFirst = fs.reads;
  assert.equal((await get("/a.txt")).text, "one");
  assert.equal((await get("/a.txt?x=1")).text, "one");
  assert.equal(fs.reads, readsAfterFirst, "served from memory");
  fs.files.set("a.txt", { bytes: new TextEncoder().encode("two"), mtimeMs: 2000 }); // same size, new mtime
  const second = await get("/a.txt");
  assert.equal(second.text, "two");
  assert.notEqual(second.etag, first.etag);
  fs.files.set("a.txt", { bytes: new TextEncoder().encode("three"), mtimeMs: 2000 }); // new size, same mtime
  assert.equal((await get("/a.txt")).text, "three");
  fs.files.delete("a.txt");
  assert.equal((await get("/a.txt")).status, 404);
});

test("files over the in-memory limit are read on every request; ranges and HEAD still work", async () => {
  const big = new Uint8Array(100 * 1024).fill(65);
  fs.files.set("big.bin", { bytes: big, mtimeMs: 5 });
  await get("/big.bin");
  const before = fs.reads;
  assert.equal((await get("/big.bin")).text.length, big.length);
  assert.equal(fs.reads, before + 1);
  fs.files.set("r.txt", { bytes: new TextEncoder().encode("0123456789"), mtimeMs: 7 });
  await get("/r.txt");
  const ranged = await handler(new Request("http://x/r.txt", { headers: { range: "bytes=2-4" } }));
  assert.equal(ranged.status, 206);
  assert.equal(new TextDecoder().decode(await ranged.bytes()), "234");
  const head = await handler(new Request("http://x/r.txt", { method: "HEAD" }));
  assert.equal(head.headers.get("content-length"), "10");
  assert.equal((await get("/../r.txt")).status, 200);
  assert.equal((await get("/a%00b")).status, 400);
});

test("over the image's files the handler answers with a plain Response (no promise); fs.statSync/readFileSync answer at once there and EAGAIN elsewhere", async () => {
  const dir = mkdtempSync(join(tmpdir(), "torito-static-"));
  try {
    mkdirSync(join(dir, "sub"));
    writeFileSync(join(dir, "index.html"), "<h1>home</h1>");
    writeFileSync(join(dir, "sub", "a.css"), "a{}");
    mount("/packed", new ImageFs(new Uint8Array(packDirectory(dir)).buffer));
    const h = serveDirectory("/packed");
    const plain = h(new Request("http://x/sub/a.css"));
    assert.ok(plain instanceof Response, "answered without a promise");
    assert.equal(plain.headers.get("content-type"), "text/css; charset=utf-8");
    assert.equal(new TextDecoder().decode(await plain.bytes()), "a{}");
    const again = h(new Request("http://x/sub/a.css", { headers: { "if-none-match": plain.headers.get("etag")! } }));
    assert.ok(again instanceof Response);
    assert.equal(again.status, 304);
    const missing = h(new Request("http://x/nope.txt"));
    assert.ok(missing instanceof Response);
    assert.equal(missing.status, 404);
    // directories take the general path: a promise
    const home = await h(new Request("http://x/"));
    assert.equal(new TextDecoder().decode(await home.bytes()), "<h1>home</h1>");
    assert.equal((await h(new Request("http://x/sub"))).status, 301);

    assert.equal(statSync("/packed/sub/a.css").size, 3);
    assert.equal(new TextDecoder().decode(readFileSync("/packed/index.html")), "<h1>home</h1>");
    assert.throws(() => statSync("/packed/nope"), { code: "ENOENT", message: /stat '\/packed\/nope'$/ });
    assert.throws(() => statSync("/changing/x"), { code: "EAGAIN" });
    assert.throws(() => readFileSync("/changing/x"), { code: "EAGAIN" });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
