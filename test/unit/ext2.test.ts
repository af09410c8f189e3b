// ext2 read-write on Node over an in-memory disk holding an image made by mke2fs -d. After
// every write workload the image must pass `e2fsck -fn`, and debugfs must read back every
// byte the driver wrote.
import assert from "node:assert/strict";
import { readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { mountExt2, type Ext2FileSystem } from "../../kernel/fs/ext2/ext2.ts";
import * as vfs from "../../kernel/fs/vfs.ts";
import { APPEND, dump, fsck, listNames, makeImage, MemoryDisk, pattern, populate, READ, scratch, UPDATE, WRITE } from "./ext2-harness.ts";

const work = scratch("ext2-unit");
after(work.cleanup);
let counter = 0;

/** A fresh image (1 KiB blocks unless told) with `files`, as a path and a mounted fs over its bytes. */
async function fresh(files: Record<string, string | Buffer> = {}, options: { sizeKiB?: number; blockSize?: number; extra?: string[]; cacheBytes?: number } = {}) {
  const n = counter++;
  const from = join(work.dir, `src-${n}`);
  populate(from, files);
  const path = makeImage(join(work.dir, `disk-${n}.img`), { sizeKiB: options.sizeKiB ?? 8192, blockSize: options.blockSize, from, extra: options.extra });
  const disk = new MemoryDisk(readFileSync(path));
  const fs = await mountExt2(disk, { cacheBytes: options.cacheBytes, log: () => undefined });
  return { path, disk, fs };
}

/** Syncs, saves the disk's bytes to the image file and requires e2fsck to find nothing. */
async function syncAndCheck(fs: Ext2FileSystem, disk: MemoryDisk, path: string): Promise<void> {
  await fs.syncAll();
  writeFileSync(path, disk.image);
  const r = fsck(path);
  assert.ok(r.ok, `e2fsck -fn found problems:\n${r.output}`);
}

async function writeFile(fs: Ext2FileSystem, path: string, data: Uint8Array, chunk = data.length || 1): Promise<void> {
  const h = await fs.open(path, WRITE, 0o644);
  for (let at = 0; at < data.length; at += chunk) {
    const n = await h.write(data, at, Math.min(chunk, data.length - at), at);
    assert.equal(n, Math.min(chunk, data.length - at));
  }
  await h.close();
}

async function readFile(fs: Ext2FileSystem, path: string): Promise<Buffer> {
  const h = await fs.open(path, READ, 0);
  const size = (await h.stat()).size;
  const out = Buffer.alloc(size);
  let at = 0;
  while (at < size) {
    const n = await h.read(out, at, Math.min(65536, size - at), at);
    assert.ok(n > 0, "short read");
    at += n;
  }
  await h.close();
  return out;
}

function sameBytes(actual: Buffer | null, expected: Buffer, what: string): void {
  assert.ok(actual !== null, `${what}: debugfs could not read it`);
  assert.equal(actual.length, expected.length, `${what}: length`);
  assert.ok(actual.equals(expected), `${what}: contents differ`);
}

describe("ext2: reading images made by mke2fs -d", () => {
  test("files, directories and sizes read back as the host wrote them (1 KiB and 4 KiB blocks)", async () => {
    for (const blockSize of [1024, 4096]) {
      const files = {
        "hello.txt": "hello, ext2\n",
        "dir/inner/deep.bin": pattern(1, 300 * 1024),
        "dir/small.bin": pattern(2, 13 * 1024),
        "empty": "",
      };
      const { fs } = await fresh(files, { blockSize });
      assert.deepEqual((await fs.readdir("")).filter((n) => n !== "lost+found").sort(), ["dir", "empty", "hello.txt"]);
      assert.deepEqual((await fs.readdir("dir")).sort(), ["inner", "small.bin"]);
      for (const [name, contents] of Object.entries(files)) {
        const expected = Buffer.from(contents);
        assert.ok((await readFile(fs, name)).equals(expected), `${name} (${blockSize})`);
        const st = await fs.stat(name);
        assert.equal(st.size, expected.length);
        assert.ok(st.isFile() && !st.isDirectory());
        assert.ok(Math.abs(st.mtimeMs - Date.now()) < 600_000);
      }
      assert.ok((await fs.stat("dir/inner")).isDirectory());
      await assert.rejects(fs.stat("nope"), { code: "ENOENT" });
      await assert.rejects(fs.stat("hello.txt/x"), { code: "ENOTDIR" });
      await assert.rejects(fs.readdir("hello.txt"), { code: "ENOTDIR" });
      await assert.rejects(fs.open("dir", READ, 0), { code: "EISDIR" });
      const info = await fs.statfs();
      assert.equal(info.blockSize, blockSize);
      assert.ok(info.freeBlocks > 0 && info.freeBlocks < info.blocks);
    }
  });

  test("symlinks made on the host are followed; a symlink loop is ELOOP, not a hang", async () => {
    const { fs, disk, path } = await fresh({ "target.txt": "via link" });
    // Add symlinks with debugfs (mke2fs -d copies them too, but this keeps the fixture simple).
    writeFileSync(path, disk.image);
    const { execFileSync } = await import("node:child_process");
    execFileSync("debugfs", ["-w", "-R", "symlink link target.txt", path], { stdio: "ignore" });
    execFileSync("debugfs", ["-w", "-R", "symlink loop loop", path], { stdio: "ignore" });
    const fs2 = await mountExt2(new MemoryDisk(readFileSync(path)), { log: () => undefined });
    assert.equal((await readFile(fs2, "link")).toString(), "via link");
    await assert.rejects(fs2.stat("loop"), { code: "ELOOP" });
    void fs;
  });

  test("rm({ recursive }) through the VFS removes links, never what they point at; lstat sees the link", async () => {
    const from = join(work.dir, "src-links");
    populate(from, { "keep/important.txt": "precious", "doomed/file.txt": "bye", "lonely.txt": "x" });
    symlinkSync("/keep", join(from, "doomed/to-keep"));          // absolute, within the file system
    symlinkSync("../keep/important.txt", join(from, "doomed/to-file"));
    symlinkSync("keep", join(from, "keep-link"));
    const path = makeImage(join(work.dir, "links.img"), { sizeKiB: 4096, from });
    const disk = new MemoryDisk(readFileSync(path));
    vfs.mount("/links", await mountExt2(disk, { log: () => undefined }));
    assert.equal((await vfs.lstat("/links/keep-link")).isSymbolicLink(), true);
    assert.equal((await vfs.stat("/links/keep-link")).isDirectory(), true);
    assert.equal((await vfs.stat("/links/keep-link")).isSymbolicLink(), false);
    await vfs.rm("/links/doomed", { recursive: true });
    await vfs.rm("/links/keep-link", { recursive: true });
    assert.deepEqual((await vfs.readdir("/links")).sort(), ["keep", "lonely.txt", "lost+found"]);
    assert.equal(Buffer.from(await vfs.readFile("/links/keep/important.txt")).toString(), "precious");
  });
});

describe("ext2: writing, checked by e2fsck -fn and debugfs", () => {
  test("files needing direct, indirect and double-indirect blocks, many small files and directories", async () => {
    const { fs, disk, path } = await fresh({ "old.txt": "old" });
    const written = new Map<string, Buffer>();
    const put = async (name: string, data: Buffer, chunk?: number) => {
      await writeFile(fs, name, data, chunk);
      written.set(name, data);
    };
    await put("direct.bin", pattern(10, 11 * 1024 + 17));
    await put("indirect.bin", pattern(11, 200 * 1024 + 5), 4096);
    await put("double.bin", pattern(12, 1536 * 1024 + 99), 65536 + 3);
    await fs.mkdir("many", 0o755);
    for (let i = 0; i < 300; i++) await put(`many/file-${i}.txt`, pattern(100 + i, i * 7));
    await fs.mkdir("a", 0o755);
    await fs.mkdir("a/b", 0o755);
    await fs.mkdir("a/b/c", 0o700);
    await put("a/b/c/nested.bin", pattern(13, 5000));
    await syncAndCheck(fs, disk, path);
    for (const [name, data] of written) sameBytes(dump(path, name, work.dir), data, name);
    assert.equal(listNames(path, "many").length, 300);
    // And the driver reads it all back too, through a fresh mount.
    const again = await mountExt2(new MemoryDisk(readFileSync(path)), { log: () => undefined });
    for (const [name, data] of written) assert.ok((await readFile(again, name)).equals(data), name);
  });

  test("overwrites in the middle, appends, sparse files and exclusive create", async () => {
    const { fs, disk, path } = await fresh({ "f.bin": pattern(20, 40 * 1024) });
    const expected = Buffer.from(pattern(20, 40 * 1024));
    const h = await fs.open("f.bin", UPDATE, 0);
    const patch = pattern(21, 3000);
    await h.write(patch, 0, patch.length, 1000);
    patch.copy(expected, 1000);
    await h.close();
    const a = await fs.open("log.txt", APPEND, 0o644);
    for (let i = 0; i < 50; i++) await a.write(Buffer.from(`line ${i}\n`), 0, `line ${i}\n`.length, 0);
    await a.close();
    const s = await fs.open("sparse.bin", WRITE, 0o644);
    await s.write(Buffer.from("end"), 0, 3, 5 * 1024 * 1024);
    await s.close();
    await assert.rejects(fs.open("f.bin", { ...WRITE, exclusive: true }, 0o644), { code: "EEXIST" });
    await syncAndCheck(fs, disk, path);
    sameBytes(dump(path, "f.bin", work.dir), expected, "f.bin");
    sameBytes(dump(path, "log.txt", work.dir), Buffer.from(Array.from({ length: 50 }, (_, i) => `line ${i}\n`).join("")), "log.txt");
    const sparse = Buffer.alloc(5 * 1024 * 1024 + 3);
    sparse.write("end", 5 * 1024 * 1024);
    sameBytes(dump(path, "sparse.bin", work.dir), sparse, "sparse.bin");
    assert.ok((await readFile(fs, "sparse.bin")).equals(sparse));
  });

  test("renames of files and directories across directories, replacing targets", async () => {
    const { fs, disk, path } = await fresh({ "x/one.txt": "one", "x/two.txt": "two", "y/keep.txt": "keep", "z/sub/deep.txt": "deep", "w/old.txt": "replaced" });
    await fs.rename("x/one.txt", "y/uno.txt");                // file across directories
    await fs.rename("x/two.txt", "x/dos.txt");                // file within a directory
    await fs.rename("z/sub", "y/moved");                      // directory across directories ('..', link counts)
    await fs.rename("y/keep.txt", "w/old.txt");               // over an existing file
    await fs.mkdir("empty", 0o755);
    await fs.rename("x", "empty");                            // a directory over an empty one
    await assert.rejects(fs.rename("y", "y/moved/inside"), { code: "EINVAL" });
    await assert.rejects(fs.rename("nothing", "y/n"), { code: "ENOENT" });
    await assert.rejects(fs.rename("w/old.txt", "y"), { code: "EISDIR" });
    await syncAndCheck(fs, disk, path);
    assert.equal(dump(path, "y/uno.txt", work.dir)?.toString(), "one");
    assert.equal(dump(path, "empty/dos.txt", work.dir)?.toString(), "two");
    assert.equal(dump(path, "y/moved/deep.txt", work.dir)?.toString(), "deep");
    assert.equal(dump(path, "w/old.txt", work.dir)?.toString(), "keep");
    assert.deepEqual(listNames(path, "z"), []);
    assert.equal(dump(path, "x/dos.txt", work.dir), null);
    assert.equal((await readFile(fs, "y/moved/../uno.txt")).toString(), "one");
  });

  test("deletes, rmdir and truncates free exactly what they used", async () => {
    const { fs, disk, path } = await fresh({ "d/a.txt": "a", "big.bin": pattern(30, 700 * 1024) });
    const before = await fs.statfs();
    await writeFile(fs, "huge.bin", pattern(31, 2 * 1024 * 1024));
    await fs.unlink("huge.bin");
    await assert.rejects(fs.rmdir("d"), { code: "ENOTEMPTY" });
    await assert.rejects(fs.unlink("d"), { code: "EISDIR" });
    await assert.rejects(fs.rmdir("big.bin"), { code: "ENOTDIR" });
    await fs.unlink("d/a.txt");
    await fs.rmdir("d");
    const after = await fs.statfs();
    assert.equal(after.freeBlocks, before.freeBlocks + 2); // d's block and a.txt's block
    assert.equal(after.freeFiles, before.freeFiles + 2);
    // Truncate across the double-indirect, indirect and direct boundaries, then grow.
    const h = await fs.open("big.bin", UPDATE, 0);
    const expected = pattern(30, 700 * 1024);
    for (const length of [500 * 1024, 270 * 1024 + 5, 100 * 1024, 12 * 1024, 5000]) {
      await h.truncate(length);
      assert.equal((await h.stat()).size, length);
    }
    await h.truncate(20_000);
    await h.close();
    const grown = Buffer.alloc(20_000);
    expected.copy(grown, 0, 0, 5000);
    await syncAndCheck(fs, disk, path);
    sameBytes(dump(path, "big.bin", work.dir), grown, "big.bin after truncates");
    // An unlinked file stays readable while open, and is freed at close.
    await writeFile(fs, "open.bin", pattern(32, 50_000));
    const open = await fs.open("open.bin", READ, 0);
    await fs.unlink("open.bin");
    const back = Buffer.alloc(50_000);
    assert.equal(await open.read(back, 0, 50_000, 0), 50_000);
    assert.ok(back.equals(pattern(32, 50_000)));
    await open.close();
    await syncAndCheck(fs, disk, path);
  });

  test("a full disk gives ENOSPC and e2fsck stays clean; deleting makes room again", async () => {
    const { fs, disk, path } = await fresh({}, { sizeKiB: 2048 });
    let written = 0;
    let error: unknown = null;
    const chunk = pattern(40, 64 * 1024);
    const h = await fs.open("fill.bin", WRITE, 0o644);
    try {
      for (;;) {
        const n = await h.write(chunk, 0, chunk.length, written);
        written += n;
        if (n < chunk.length) {
          await h.write(chunk, 0, 1, written);
        }
      }
    } catch (e) {
      error = e;
    }
    await h.close();
    assert.equal((error as { code?: string }).code, "ENOSPC");
    assert.ok(written > 1024 * 1024, `only ${written} bytes fit`);
    await assert.rejects(writeFile(fs, "more.bin", pattern(41, 10_000)), { code: "ENOSPC" });
    await syncAndCheck(fs, disk, path);
    const onDisk = dump(path, "fill.bin", work.dir);
    assert.equal(onDisk?.length, written);
    for (let at = 0; at < written; at += chunk.length) assert.ok(onDisk!.subarray(at, at + chunk.length).equals(chunk.subarray(0, Math.min(chunk.length, written - at))));
    await fs.unlink("fill.bin");
    await writeFile(fs, "after.bin", pattern(42, 100_000));
    await syncAndCheck(fs, disk, path);
    sameBytes(dump(path, "after.bin", work.dir), pattern(42, 100_000), "after.bin");
  });

  test("running out of inodes gives ENOSPC, e2fsck clean", async () => {
    const { fs, disk, path } = await fresh({}, { sizeKiB: 1024, extra: ["-N", "64"] });
    let created = 0;
    let error: unknown = null;
    try {
      for (let i = 0; i < 1000; i++) {
        await writeFile(fs, `f${i}`, Buffer.from(`file ${i}`));
        created++;
      }
    } catch (e) {
      error = e;
    }
    assert.equal((error as { code?: string }).code, "ENOSPC");
    assert.ok(created > 10);
    await assert.rejects(fs.mkdir("dir", 0o755), { code: "ENOSPC" });
    await syncAndCheck(fs, disk, path);
    assert.equal(dump(path, `f${created - 1}`, work.dir)?.toString(), `file ${created - 1}`);
  });

  test("a small cache writes back under pressure and stays consistent (random workload vs a model)", async () => {
    const { fs, disk, path } = await fresh({}, { sizeKiB: 16384, cacheBytes: 64 * 1024 });
    const model = new Map<string, Buffer>();
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    await fs.mkdir("r", 0o755);
    for (let step = 0; step < 300; step++) {
      const name = `r/f${random(12)}`;
      const current = model.get(name) ?? Buffer.alloc(0);
      const action = random(4);
      if (action === 0 && model.has(name)) {
        await fs.unlink(name);
        model.delete(name);
      } else if (action === 1 && model.has(name)) {
        const length = random(400_000);
        const h = await fs.open(name, UPDATE, 0);
        await h.truncate(length);
        await h.close();
        const next = Buffer.alloc(length);
        current.copy(next, 0, 0, Math.min(length, current.length));
        model.set(name, next);
      } else {
        const at = random(300_000);
        const data = pattern(step, 1 + random(70_000));
        const h = await fs.open(name, { ...UPDATE, create: true }, 0o644);
        await h.write(data, 0, data.length, at);
        await h.close();
        const next = Buffer.alloc(Math.max(current.length, at + data.length));
        current.copy(next);
        data.copy(next, at);
        model.set(name, next);
      }
      if (step % 100 === 99) await syncAndCheck(fs, disk, path);
    }
    await syncAndCheck(fs, disk, path);
    for (const [name, data] of model) sameBytes(dump(path, name, work.dir), data, name);
    assert.deepEqual(listNames(path, "r").sort(), [...model.keys()].map((n) => n.slice(2)).sort());
  });

  test("the superblock says not clean while changes are unsynced and clean after sync", async () => {
    const { fs, disk, path } = await fresh({}, { cacheBytes: 64 * 1024 });
    // Enough data to force write-back before any sync.
    await writeFile(fs, "big.bin", pattern(50, 1024 * 1024));
    assert.ok(disk.writes > 0);
    assert.equal(disk.image.readUInt16LE(1024 + 58) & 1, 0, "state VALID while blocks were written outside a sync");
    await fs.syncAll();
    assert.equal(disk.image.readUInt16LE(1024 + 58) & 1, 1);
    const writes = disk.writes;
    await fs.syncAll();
    assert.equal(disk.writes, writes, "a sync with nothing dirty writes nothing");
    writeFileSync(path, disk.image);
    assert.ok(fsck(path).ok);
  });
});

describe("ext2: unusable and read-only images", () => {
  test("bad magic, absurd counts and a too-small disk are EINVAL with the reason", async () => {
    const { path } = await fresh({ "a.txt": "a" });
    const image = readFileSync(path);
    const broken = (edit: (b: Buffer) => void) => {
      const b = Buffer.from(image);
      edit(b);
      return mountExt2(new MemoryDisk(b), { log: () => undefined });
    };
    await assert.rejects(broken((b) => b.writeUInt16LE(0x1234, 1024 + 56)), { code: "EINVAL", message: /bad magic 0x1234/ });
    await assert.rejects(broken((b) => b.writeUInt32LE(9, 1024 + 24)), { code: "EINVAL", message: /block size/ });
    await assert.rejects(broken((b) => b.writeUInt32LE(0xffffff, 1024 + 4)), { code: "EINVAL", message: /disk holds only/ });
    await assert.rejects(broken((b) => b.writeUInt32LE(0, 1024 + 32)), { code: "EINVAL", message: /s_blocks_per_group/ });
    await assert.rejects(broken((b) => b.writeUInt32LE(12345, 1024 + 0)), { code: "EINVAL", message: /s_inodes_count/ });
    await assert.rejects(broken((b) => b.writeUInt32LE(0x40, 1024 + 96)), { code: "EINVAL", message: /extents/ });
    await assert.rejects(broken((b) => b.writeUInt32LE(0x7fffff, 2048 + 8)), { code: "EIO", message: /inode table/ });
    await assert.rejects(mountExt2(new MemoryDisk(image.subarray(0, 1024)), { log: () => undefined }), { code: "EINVAL" });
  });

  test("a block pointer outside the disk and a bad directory rec_len are EIO naming them", async () => {
    const { path } = await fresh({ "f.bin": pattern(60, 5000), "d/x.txt": "x" });
    const { execFileSync } = await import("node:child_process");
    execFileSync("debugfs", ["-w", "-R", "sif f.bin block[1] 999999", path], { stdio: "ignore" });
    const fs = await mountExt2(new MemoryDisk(readFileSync(path)), { log: () => undefined });
    await assert.rejects(readFile(fs, "f.bin"), { code: "EIO", message: /block pointer 999999 is outside the disk/ });
    // Corrupt d's first directory block: '.' gets rec_len 3.
    const image = readFileSync(path);
    const out = execFileSync("debugfs", ["-R", "blocks d", path], { encoding: "utf8" });
    const block = Number(out.trim().split(/\s+/)[0]);
    image.writeUInt16LE(3, block * 1024 + 4);
    const fs2 = await mountExt2(new MemoryDisk(image), { log: () => undefined });
    await assert.rejects(fs2.readdir("d"), { code: "EIO", message: /bad rec_len 3/ });
    await assert.rejects(fs2.stat("d/x.txt"), { code: "EIO" });
    // A directory entry that points to itself is harmless to path walking (finite paths).
    assert.ok((await fs2.stat("f.bin")).isFile());
  });

  test("ext3 mounts read-only with a message; writes are EROFS; a read-only disk too", async () => {
    const n = counter++;
    const from = join(work.dir, `src-${n}`);
    populate(from, { "j.txt": "journaled" });
    const path = makeImage(join(work.dir, `ext3-${n}.img`), { sizeKiB: 8192, type: "ext3", from });
    const messages: string[] = [];
    const fs = await mountExt2(new MemoryDisk(readFileSync(path)), { log: (m) => messages.push(m) });
    assert.ok(fs.readOnly);
    assert.match(messages.join("\n"), /ext3.*read-only/);
    assert.equal((await readFile(fs, "j.txt")).toString(), "journaled");
    await assert.rejects(fs.mkdir("x", 0o755), { code: "EROFS" });
    await assert.rejects(fs.open("new", WRITE, 0o644), { code: "EROFS" });
    // needs_recovery set: still read-only, and the message says recovery is needed.
    const image = readFileSync(path);
    image.writeUInt32LE(image.readUInt32LE(1024 + 96) | 0x4, 1024 + 96);
    const recovering: string[] = [];
    const fs2 = await mountExt2(new MemoryDisk(image), { log: (m) => recovering.push(m) });
    assert.ok(fs2.readOnly);
    assert.match(recovering.join("\n"), /needs recovery/);
    const { path: plain } = await fresh({ "r.txt": "r" });
    const fs3 = await mountExt2(new MemoryDisk(readFileSync(plain), true), { log: () => undefined });
    assert.ok(fs3.readOnly);
    await assert.rejects(fs3.unlink("r.txt"), { code: "EROFS" });
  });
});
