// ext2 in a real guest on a real virtio-blk disk: the guest reads files made by mke2fs -d,
// writes, renames, deletes and syncs; the host then requires `e2fsck -fn` clean and reads
// every byte back with debugfs. Then QEMU is SIGKILLed in the middle of synced writes, and
// after `e2fsck -p` every checkpoint the guest reported is intact.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { buildImage } from "../../host/build.ts";
import { kvmUsable } from "../../host/run.ts";
import { dump, fsck, listNames, makeImage, pattern, populate, scratch } from "../unit/ext2-harness.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "../..");
const cli = join(repo, "bin/torito.js");
const work = scratch("ext2-system");
const accel = process.env["TORITO_ACCEL"] || (kvmUsable().ok ? "kvm" : "tcg");
const image = join(work.dir, "ext2-disk.elf");
const twoCores = join(work.dir, "smp-disks.elf");
const exitSync = join(work.dir, "fs-exit-sync.elf");

before(async () => {
  await buildImage({ entry: join(repo, "test/fixtures/apps/ext2-disk.ts"), output: image });
  await buildImage({ entry: join(repo, "test/fixtures/apps/smp-disks.ts"), output: twoCores });
  await buildImage({ entry: join(repo, "test/fixtures/apps/fs-exit-sync.ts"), output: exitSync });
});
after(work.cleanup);

function checksum(data: Buffer): number {
  let sum = 0;
  for (const byte of data) sum = (sum * 31 + byte) >>> 0;
  return sum;
}

test("the guest's writes, renames and deletes pass e2fsck -fn and debugfs reads every byte", () => {
  const from = join(work.dir, "src");
  const big = pattern(99, 500 * 1024);
  populate(from, { "hello.txt": "hello from the host\n", "big.bin": big, "old.txt": "delete me" });
  const disk = makeImage(join(work.dir, "disk.img"), { sizeKiB: 16 * 1024, from });
  const r = spawnSync(process.execPath, [cli, "run", image, "--accel", accel, "--timeout", "30", "--disk", disk, "--", "workload"], {
    cwd: repo, encoding: "utf8", timeout: 40_000,
  });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /host hello: hello from the host/);
  assert.match(r.stdout, new RegExp(`host big checksum: ${checksum(big)}\\b`));
  assert.match(r.stdout, /synced/);
  const check = fsck(disk);
  assert.ok(check.ok, check.output);
  assert.ok(dump(disk, "guest/double.bin", work.dir)?.equals(pattern(1, 300 * 1024 + 7)), "guest/double.bin");
  assert.ok(dump(disk, "guest/two-mib.bin", work.dir)?.equals(pattern(2, 2 << 20)), "guest/two-mib.bin");
  const small = listNames(disk, "guest/small");
  assert.equal(small.length, 99);
  for (let i = 1; i < 100; i++) assert.equal(dump(disk, `guest/small/f${i}.txt`, work.dir)?.toString(), `small file ${i}\n`);
  assert.equal(dump(disk, "guest/to/renamed.txt", work.dir)?.toString(), "moved\n");
  assert.deepEqual(listNames(disk, "guest/to/dir"), []);
  assert.equal(dump(disk, "old.txt", work.dir), null);
  assert.ok(dump(disk, "big.bin", work.dir)?.equals(big));
});

test("QEMU killed in the middle of writes: after e2fsck -p every synced checkpoint is intact", async () => {
  const disk = makeImage(join(work.dir, "crash.img"), { sizeKiB: 32 * 1024 });
  const killAfter = 12;
  const seen: number[] = [];
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, [cli, "run", image, "--accel", accel, "--timeout", "30", "--disk", disk, "--", "checkpoints"], { cwd: repo, detached: true });
    let pending = "";
    let killed = false;
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const m = /^checkpoint (\d+)$/.exec(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
        if (m !== null) seen.push(Number(m[1]));
        if (seen.length >= killAfter && !killed) {
          killed = true;
          // The CLI and QEMU share a process group (detached): SIGKILL both, mid-write.
          process.kill(-child.pid!, "SIGKILL");
        }
      }
    });
    child.on("error", reject);
    child.on("close", () => resolve());
  });
  assert.ok(seen.length >= killAfter, `only ${seen.length} checkpoints before the guest stopped`);
  const preen = spawnSync("e2fsck", ["-fp", disk], { encoding: "utf8" });
  assert.ok(preen.status !== null && preen.status <= 1, `e2fsck -p exit ${preen.status}: ${preen.stdout}${preen.stderr}`);
  const check = fsck(disk);
  assert.ok(check.ok, check.output);
  for (const n of seen) {
    assert.ok(dump(disk, `ckpt/file-${n}`, work.dir)?.equals(pattern(1000 + n, 20 * 1024)), `checkpoint ${n} lost or damaged`);
  }
});

test("a clean exit writes back what the app never synced (writeFile, appendFile, a handle, rename)", () => {
  const disk = makeImage(join(work.dir, "exit-sync.img"), { sizeKiB: 4096 });
  const r = spawnSync(process.execPath, [cli, "run", exitSync, "--accel", accel, "--timeout", "30", "--disk", disk], { cwd: repo, encoding: "utf8", timeout: 40_000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^written, not synced$/m);
  const check = fsck(disk);
  assert.ok(check.ok, check.output);
  assert.equal(dump(disk, "notes/c.txt", work.dir)?.toString(), "first\nsecond\n");
  assert.equal(dump(disk, "notes/a.txt", work.dir), null);
  const bytes = Buffer.alloc(70_000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7) & 0xff;
  assert.ok(dump(disk, "notes/b.bin", work.dir)?.equals(bytes), "notes/b.bin");
});

test("two cores, two disks: each core mounts its own disk at /disk; the clean exit writes back both; both pass e2fsck -fn", () => {
  const disks = ["a", "b"].map((name) => {
    const from = join(work.dir, `src-${name}`);
    populate(from, { [`${name}.txt`]: `seeded ${name}\n` });
    return makeImage(join(work.dir, `${name}.img`), { sizeKiB: 4096, from });
  });
  const r = spawnSync(process.execPath, [cli, "run", twoCores, "--accel", accel, "--cpus", "2", "--timeout", "60", "--disk", disks[0]!, "--disk", disks[1]!], {
    cwd: repo, encoding: "utf8", timeout: 90_000,
  });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^core 0 sees: a\.txt,core-0\.txt,lost\+found$/m);
  assert.match(r.stdout, /^core 1 sees: b\.txt,core-1\.txt,lost\+found$/m);
  assert.match(r.stdout, /^blk owners: 0,1$/m);
  for (const [i, disk] of disks.entries()) {
    const check = fsck(disk);
    assert.ok(check.ok, check.output);
    assert.equal(dump(disk, `core-${i}.txt`, work.dir)?.toString(), `written by core ${i}\n`);
  }
});
