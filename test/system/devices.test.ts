// The Devices unit against REAL QEMU virtio devices (virtio-mmio, legacy and modern
// transports): block I/O checked byte for byte on the host, read-only disks, the virtio
// console on a host chardev, virtio-rng seeding, and the interrupt-driven idle path.
// Runs under the default accelerator (KVM when usable; TORITO_ACCEL=tcg forces TCG) and
// repeats the essential cases under the other one.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { buildImage } from "../../host/build.ts";
import { kvmUsable, qemuArgs, QEMU_BINARY, type Accel } from "../../host/run.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "../..");
const cli = join(repo, "bin/torito.js");
const work = mkdtempSync(join(tmpdir(), "torito-devices-test-"));
const defaultAccel = process.env["TORITO_ACCEL"] || (kvmUsable().ok ? "kvm" : "tcg");
const otherAccel = defaultAccel === "kvm" ? "tcg" : kvmUsable().ok ? "kvm" : undefined;
const images = { blk: join(work, "devices-blk.elf"), misc: join(work, "devices-misc.elf") };

before(async () => {
  await buildImage({ entry: join(repo, "test/fixtures/apps/devices-blk.ts"), output: images.blk });
  await buildImage({ entry: join(repo, "test/fixtures/apps/devices-misc.ts"), output: images.misc });
});
after(() => rmSync(work, { recursive: true, force: true }));

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(image: string, options: string[], appArgs: string[], accel = defaultAccel): Result {
  const r = spawnSync(process.execPath, [cli, "run", image, "--accel", accel, "--timeout", "20", ...options, "--", ...appArgs], {
    cwd: repo, encoding: "utf8", timeout: 30_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs the CLI and calls `onLine` for each stdout line while the guest is still running. */
function runWatching(image: string, options: string[], appArgs: string[], onLine: (line: string) => void, accel = defaultAccel): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, "run", image, "--accel", accel, "--timeout", "20", ...options, "--", ...appArgs], { cwd: repo });
    let stdout = "", stderr = "", pending = "";
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      stdout += chunk;
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        onLine(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
    });
    child.stderr.on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

const pattern = (sector: number, i: number) => (sector * 7 + i * 13 + (i >> 8)) & 0xff;
function expectedImage(sectors: number, total: number): Buffer {
  const b = Buffer.alloc(total * 512);
  for (let s = 0; s < sectors; s++) for (let i = 0; i < 512; i++) b[s * 512 + i] = pattern(s, i);
  return b;
}
function diskFile(name: string, contents: Buffer): string {
  const path = join(work, name);
  writeFileSync(path, contents);
  return path;
}

function blockSuite(accel: string, full: boolean): void {
  for (const transport of full ? ["legacy", "modern"] : ["modern"]) {
    const flags = transport === "modern" ? ["--virtio-modern"] : [];
    test(`${accel}, ${transport} transport: the guest writes a pattern, the host sees it byte for byte right after flush`, async () => {
      const disk = diskFile(`w-${accel}-${transport}.img`, Buffer.alloc(1 << 20, 0xee));
      let atFlush: Buffer | undefined;
      const r = await runWatching(images.blk, ["--disk", disk, ...flags], ["write-pattern", "600"], (line) => {
        if (line === "flushed") atFlush = readFileSync(disk); // the guest is still running
      }, accel);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.ok(atFlush !== undefined, `no "flushed" line: ${r.stdout}`);
      const expected = expectedImage(600, 2048);
      expected.fill(0xee, 600 * 512);
      assert.ok(atFlush.equals(expected), "disk contents after flush differ from the pattern");
    });

    test(`${accel}, ${transport} transport: the guest reads an image the host wrote, with many reads in flight`, () => {
      const disk = diskFile(`r-${accel}-${transport}.img`, expectedImage(2048, 2048));
      const r = run(images.blk, ["--disk", disk, ...flags], ["read-check", "2048"], accel);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, "read ok 2048\ninto ok\n");
    });
  }
  if (!full) return;

  test(`${accel}: a read past the end rejects naming the sector; the last sector still reads`, () => {
    const disk = diskFile(`e-${accel}.img`, Buffer.alloc(64 * 512));
    const r = run(images.blk, ["--disk", disk], ["past-end"], accel);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, "rejected: virtio-blk@0xfeb00e00: read of 2 sectors at sector 63 is past the end of the disk (64 sectors)\nlast sector ok 512\n");
  });

  test(`${accel}: a read-only disk (--disk FILE:ro) refuses writes and stays unchanged`, () => {
    const contents = expectedImage(16, 16);
    const disk = diskFile(`ro-${accel}.img`, contents);
    const r = run(images.blk, ["--disk", `${disk}:ro`], ["write-ro"], accel);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, "readOnly true\nrejected: virtio-blk@0xfeb00e00: write at sector 0 refused: the disk is read-only (VIRTIO_BLK_F_RO)\n");
    assert.ok(readFileSync(disk).equals(contents));
  });

  test(`${accel}: devices.list() and the disk's identity, capacity and features`, () => {
    const disk = diskFile(`i-${accel}.img`, Buffer.alloc(3 << 20));
    for (const [flags, version] of [[[], 1], [["--virtio-modern"], 2]] as const) {
      const r = run(images.blk, ["--disk", disk, ...flags], ["info"], accel);
      assert.equal(r.status, 0, r.stderr);
      const info = JSON.parse(r.stdout) as Record<string, unknown> & { list: Record<string, unknown>[] };
      assert.deepEqual({ ...info, list: undefined }, { list: undefined, capacity: 6144, sectorSize: 512, blockSize: 512, readOnly: false, id: "" });
      assert.equal(info.list.length, 1);
      const d = info.list[0]!;
      assert.deepEqual([d["kind"], d["mmio"], d["irq"], d["core"], d["transportVersion"], d["active"], d["error"]], ["blk", 0xfeb00e00, 12, 0, version, true, null]);
      const features = d["features"] as number[];
      assert.ok(features.includes(28) && features.includes(29), `INDIRECT_DESC and EVENT_IDX negotiated: ${features}`);
    }
  });

  test(`${accel}: with no spin, the core halts between requests and device interrupts wake it`, () => {
    // 8 MiB reads: long enough that the device is still busy when the core arms the interrupt.
    const disk = diskFile(`idle-${accel}.img`, Buffer.alloc(17 << 20));
    const r = run(images.misc, ["--disk", disk], ["idle", "10", "0", "16384"], accel);
    assert.equal(r.status, 0, r.stderr);
    const stats = JSON.parse(r.stdout) as { halts: number; interrupts: number };
    assert.ok(stats.halts >= 1 && stats.interrupts >= 1, r.stdout);
  });
}

describe(`block devices (${defaultAccel})`, () => blockSuite(defaultAccel, true));
if (otherAccel !== undefined) describe(`block devices (${otherAccel})`, () => blockSuite(otherAccel, false));

describe("console and entropy", () => {
  for (const accel of otherAccel === undefined ? [defaultAccel] : [defaultAccel, otherAccel]) {
    test(`${accel}: virtio-console output reaches a host chardev file`, () => {
      const file = join(work, `console-${accel}.txt`);
      const r = run(images.misc, ["--console", file, "--virtio-modern"], ["console", "hello from the guest"], accel);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, "sent\n");
      assert.equal(readFileSync(file, "utf8"), "hello from the guest 0\nhello from the guest 1\nhello from the guest 2\n");
    });

    test(`${accel}: two boots draw different random bytes from the boot seed (fw_cfg); --rng mixes in virtio-rng`, () => {
      const boots = [[], ["--rng"]].map((options) => run(images.misc, options, ["random"], accel));
      for (const [i, r] of boots.entries()) {
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, new RegExp(`^[0-9a-f]{64}\\n[0-9a-f-]{36}\\nentropy ${i === 0 ? "fw_cfg" : "fw_cfg\\+virtio-rng"}\\n$`));
      }
      assert.notEqual(boots[0]!.stdout.slice(0, 64), boots[1]!.stdout.slice(0, 64));
    });
  }

  test("the native ChaCha20 block function agrees with the TypeScript one (RFC 8439 vector and 200 random inputs)", () => {
    const r = run(images.misc, [], ["chacha", "200"]);
    assert.equal(r.status, 0, r.stderr);
    // RFC 8439 §2.3.2: the block's first serialized word is 10 f1 e7 e4 (little-endian 0xe4e7f110)
    assert.equal(r.stdout, "chacha20 native = script: 201 of 201; RFC 8439 word 0: e4e7f110\n");
  });

  test("every core seeds its own generator: two cores draw different bytes", () => {
    const r = run(images.misc, ["--cpus", "2"], ["random"]);
    assert.equal(r.status, 0, r.stderr);
    const m = /^([0-9a-f]{64})\n[0-9a-f-]{36}\nentropy fw_cfg\ncore 1 ([0-9a-f]{64}) fw_cfg\n$/.exec(r.stdout);
    assert.ok(m, r.stdout);
    assert.notEqual(m[1], m[2]);
  });

  test("without a boot seed or virtio-rng (a VMM without fw_cfg), crypto still works, seeded from timer jitter with a warning", () => {
    // `torito run` always passes the seed: start QEMU with its command line minus the seed.
    const boots = [0, 1].map(() => {
      const argv = qemuArgs({ image: images.misc, accel: defaultAccel as Accel, memBytes: 64 << 20, cpus: 1, ports: [], appArgs: ["random"] });
      const r = spawnSync(QEMU_BINARY, argv, { encoding: "utf8", timeout: 30_000 });
      return { status: r.status, stdout: r.stdout, stderr: r.stderr };
    });
    for (const r of boots) {
      assert.equal(r.status, 1, r.stderr); // isa-debug-exit: (0 << 1) | 1
      assert.match(r.stdout, /^torito: warning: no boot seed \(fw_cfg\) and no virtio-rng device.*\n[0-9a-f]{64}\n.*\nentropy tsc-jitter\n$/);
    }
    assert.notEqual(boots[0]!.stdout, boots[1]!.stdout);
  });
});
