// SMP (issue 6): `torito run --cpus N` starts every core, each with its own runtime, memory
// region and event loop; cores call each other and exchange messages through shared rings.
// Under KVM (when /dev/kvm works) and TCG.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, test } from "node:test";
import { kvmUsable, type Accel } from "../../host/run.ts";
import { repo, testImages } from "../helpers/images.ts";

const cli = join(repo, "bin/torito.js");
const images = testImages("smp", {
  basic: "test/fixtures/apps/smp-basic.ts",
  crash: "test/fixtures/apps/smp-crash.ts",
  oom: "test/fixtures/apps/smp-oom.ts",
  oomAll: "test/fixtures/apps/oom.ts",
  oom0: "test/fixtures/apps/smp-oom0.ts",
  memory: "test/fixtures/apps/smp-memory.ts",
  hello: "examples/hello/hello.ts",
});
const accels: Accel[] = kvmUsable().ok ? ["kvm", "tcg"] : ["tcg"];

function run(image: string, accel: Accel, cpus: number, extra: string[] = []) {
  const args = [cli, "run", image, "--accel", accel, "--cpus", String(cpus), "--timeout", "60", ...extra];
  const r = spawnSync(process.execPath, args, { cwd: repo, encoding: "utf8", timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

for (const accel of accels) {
  describe(`SMP under ${accel}`, () => {
    test("with --cpus 2 both cores run the app, calls and messages round-trip in order, and a 16 MiB ArrayBuffer moves without a copy", () => {
      const r = run(images.basic, accel, 2);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^core 0 of 2 running$/m);
      assert.match(r.stdout, /^core 1 of 2 running$/m);
      assert.match(r.stdout, /^run whoami on core 1: 1$/m);
      assert.match(r.stdout, /^run add on core 1: 42$/m);
      assert.match(r.stdout, /^run fail: RangeError: no such thing \(on core 1\)$/m);
      assert.match(r.stdout, /^sender: detached true, /m);
      assert.match(r.stdout, /^echoes: 200 in order: true$/m);
      assert.match(r.stdout, /^big buffer: same address true, sum ok true$/m);
    });

    test("with --cpus 1 the same app sees one core and cannot reach another", () => {
      const r = run(images.basic, accel, 1);
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /^core 0 of 1 running$/m);
      assert.match(r.stdout, /^Uncaught (\(in promise\) )?RangeError: cores: no other core 1 \(this is core 0 of 1\)$/m);
    });

    test("an uncaught error on core 1 names the core and stops the VM with code 1", () => {
      const r = run(images.crash, accel, 2);
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /^\[core 1\] Uncaught Error: core one gives up$/m);
      assert.match(r.stdout, /at <anonymous> \(test\/fixtures\/apps\/smp-crash\.ts:6:\d+\)/);
    });

    test("core 1 running out of its own heap stops alone with a report; core 0 sees it and goes on", () => {
      const r = run(images.oom, accel, 2);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^before: pong$/m);
      assert.match(r.stdout, /^fatal: JavaScript heap out of memory on core 1 \(limit (\d+) KiB/m);
      assert.match(r.stdout, /^torito: core 1 stopped; the other cores go on$/m);
      assert.match(r.stdout, /^after: (core 1 has stopped \(its heap ran out\)|cores\.run: core 1 stopped \(its heap ran out\) before it answered)$/m);
      assert.match(r.stdout, /^core 0 goes on: 64 blocks, used true, peak true$/m);
      const limitKiB = Number(/on core 1 \(limit (\d+) KiB/.exec(r.stdout)![1]);
      assert.ok(limitKiB < 32 * 1024, `core 1's heap limit ${limitKiB} KiB is not about half of 64 MiB`);
    });

    test("--mem-weights 1,3 gives core 1 three times core 0's memory", () => {
      const r = run(images.memory, accel, 2, ["--mem", "64M", "--mem-weights", "1,3"]);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      const limit = (core: number) => Number(new RegExp(`^core ${core} limit (\\d+)$`, "m").exec(r.stdout)?.[1]);
      const ratio = limit(1) / limit(0);
      assert.ok(ratio > 2.7 && ratio < 3.3, `limits ${limit(0)} and ${limit(1)}: ratio ${ratio}\n${r.stdout}`);
      const even = run(images.memory, accel, 2, ["--mem", "64M"]);
      const evenLimit = (core: number) => Number(new RegExp(`^core ${core} limit (\\d+)$`, "m").exec(even.stdout)?.[1]);
      assert.ok(Math.abs(evenLimit(1) / evenLimit(0) - 1) < 0.1, even.stdout);
    });

    test("core 0 running out of memory stops alone; the VM ends when core 1 has finished, with code 4", () => {
      const r = run(images.oom0, accel, 2);
      assert.equal(r.status, 4, r.stdout + r.stderr);
      assert.match(r.stdout, /^fatal: JavaScript heap out of memory on core 0 \(limit \d+ KiB/m);
      assert.match(r.stdout, /^torito: core 0 stopped; the other cores go on$/m);
      assert.match(r.stdout, /^core 1 finished its work$/m);
    });

    test("the only core left running out of memory ends the VM with code 4", () => {
      const r = run(images.oomAll, accel, 2);
      assert.equal(r.status, 4, r.stdout + r.stderr);
      assert.match(r.stdout, /^torito: core [01] stopped; the other cores go on$/m);
      assert.equal(r.stdout.match(/^fatal: JavaScript heap out of memory on core [01]/gm)?.length, 2, r.stdout);
    });

    test("hello boots on 4 vCPUs: every core runs the top level, core 0 decides when the VM ends", () => {
      const r = run(images.hello, accel, 4, ["--mem", "32M"]);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.equal(r.stdout.match(/^Hello, world, from Torito!$/gm)?.length, 4, r.stdout);
    });
  });
}
