// virtio-fs against QEMU's real virtiofsd, started by `torito run --fs DIR`: the guest app
// (test/fixtures/apps/virtiofs-suite.ts) reads what the host made, including a 5 MiB file
// hashed in the guest, writes, appends, truncates, renames and removes, checks error codes,
// and copies the big file back; this side then checks every byte the guest left behind.
// Runs under the default accelerator (KVM when usable) and again under TCG, lighter there.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { buildImage } from "../../host/build.ts";
import { kvmUsable } from "../../host/run.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "../..");
const cli = join(repo, "bin/torito.js");
const work = mkdtempSync(join(tmpdir(), "torito-virtiofs-test-"));
const image = join(work, "virtiofs-suite.elf");
const defaultAccel = process.env["TORITO_ACCEL"] || (kvmUsable().ok ? "kvm" : "tcg");
const BIG_BYTES = 5 * 1024 * 1024 + 4097; // not a multiple of the 1 MiB transfer size

before(async () => {
  await buildImage({ entry: join(repo, "test/fixtures/apps/virtiofs-suite.ts"), output: image });
});
after(() => rmSync(work, { recursive: true, force: true }));

/** The tree the guest app expects; returns the big file's contents. */
function makeShare(dir: string): Buffer {
  mkdirSync(join(dir, "dir/sub"), { recursive: true });
  mkdirSync(join(dir, "emptydir"));
  mkdirSync(join(dir, "nonempty"));
  const files: Record<string, string> = {
    "hello.txt": "hello from the host\n", "dir/sub/nested.txt": "nested\n", "nonempty/x.txt": "x",
    "file.txt": "file", "existing.txt": "exists", "overwrite.txt": "AAAAAAAAAA", "append.txt": "start\n",
    "toremove.txt": "bye", "trunc.txt": "0123456789abcdefghijklmnopqrstuvwxyz",
  };
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const big = randomBytes(BIG_BYTES);
  writeFileSync(join(dir, "big.bin"), big);
  return big;
}

function runGuest(share: string, accel: string, appArgs: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, "run", image, "--accel", accel, "--timeout", "90", "--fs", share, "--", ...appArgs], {
    cwd: repo, encoding: "utf8", timeout: 120_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function value(stdout: string, name: string): string | undefined {
  return new RegExp(`^value ${name.replace(/\./g, "\\.")} (\\S+)`, "m").exec(stdout)?.[1];
}

function suite(accel: string, appArgs: string[]): void {
  const share = mkdtempSync(join(work, `share-${accel}-`));
  const big = makeShare(share);
  const r = runGuest(share, accel, appArgs);
  const failed = r.stdout.split("\n").filter((l) => l.startsWith("FAIL"));
  assert.deepEqual(failed, [], `guest checks failed:\n${r.stdout}\n${r.stderr}`);
  assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /^done$/m);
  assert.ok((r.stdout.match(/^ok /gm) ?? []).length >= 37, r.stdout);
  if (appArgs.includes("hash")) {
    assert.equal(value(r.stdout, "big.sha256"), createHash("sha256").update(big).digest("hex"), "SHA-256 computed in the guest");
  }

  // What the guest wrote, seen on the host.
  const read = (name: string) => readFileSync(join(share, name), "utf8");
  assert.ok(readFileSync(join(share, "big-copy.bin")).equals(big), "the 5 MiB copy written by the guest is byte-exact");
  assert.equal(read("new.txt"), "guest wrote this\n");
  assert.equal(statSync(join(share, "new.txt")).mtimeMs, 1_000_000_000_000, "SETATTR mtime");
  assert.equal(read("append.txt"), "start\nmore\n");
  assert.equal(read("overwrite.txt"), "AAABBAAAAA");
  assert.equal(read("trunc.txt"), "0123456789");
  assert.equal(read("existing.txt"), "");
  assert.equal(read("made/g.txt"), "in deep\n");
  assert.ok(statSync(join(share, "made/deeper")).isDirectory());
  assert.deepEqual(readdirSync(join(share, "made")).sort(), ["deeper", "g.txt"]);
  assert.equal(read("renamed-over.txt"), "new");
  assert.ok(!existsSync(join(share, "rename-src.txt")));
  assert.ok(!existsSync(join(share, "toremove.txt")));
  assert.ok(!existsSync(join(share, "emptydir")));
  assert.equal(read("nonempty/x.txt"), "x", "ENOTEMPTY left the directory alone");
  for (let i = 0; i < 40; i++) assert.equal(read(`many-${i}.txt`), String(i));
  // Untouched host files are still as the host wrote them.
  assert.equal(read("hello.txt"), "hello from the host\n");
  assert.ok(readFileSync(join(share, "big.bin")).equals(big));
}

test(`${defaultAccel}: host files read in the guest (5 MiB hashed there), guest writes, renames, removes and errors seen on the host`, { timeout: 90_000 }, () => {
  suite(defaultAccel, defaultAccel === "kvm" ? ["hash"] : ["light"]);
});

test("tcg: the same share operations under software emulation (no in-guest hashing)", { timeout: 120_000, skip: defaultAccel === "tcg" }, () => {
  suite("tcg", ["light"]);
});

test("without --fs the guest finds no virtio-fs device", { timeout: 30_000 }, () => {
  const r = spawnSync(process.execPath, [cli, "run", image, "--accel", defaultAccel, "--timeout", "20"], { cwd: repo, encoding: "utf8", timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^no virtio-fs device$/m);
});
