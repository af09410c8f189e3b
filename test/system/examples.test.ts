// The examples and fixture apps built with `torito build` and booted with `torito run`,
// under KVM (when /dev/kvm works) and under TCG: what a user sees on the console and the
// exit code the CLI returns.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { kvmUsable, type Accel } from "../../host/run.ts";
import { repo, testImages } from "../helpers/images.ts";

const cli = join(repo, "bin/torito.js");
const images = testImages("examples", {
  hello: "examples/hello/hello.ts",
  crash: "examples/crash/crash.ts",
  rejection: "test/fixtures/apps/rejection.ts",
  oom: "test/fixtures/apps/oom.ts",
  spin: "test/fixtures/apps/spin.ts",
  fault: "test/fixtures/apps/fault.ts",
  encoding: "test/fixtures/apps/encoding.ts",
  chatty: "test/fixtures/apps/chatty.ts",
  cyclic: "test/fixtures/apps/cyclic-garbage.ts",
  lazy: "test/fixtures/apps/lazy-import.ts",
  splitOrder: "test/fixtures/apps/split-order.ts",
});
const accels: Accel[] = kvmUsable().ok ? ["kvm", "tcg"] : ["tcg"];
const scratch = mkdtempSync(join(tmpdir(), "torito-examples-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** Where `symbol` of ELF `image` lies in the file (through the program headers). */
function fileOffset(image: string, symbol: string): number {
  const address = parseInt(new RegExp(`^([0-9a-f]+) \\w ${symbol}$`, "m").exec(spawnSync("nm", [image], { encoding: "utf8" }).stdout)?.[1] ?? "", 16);
  for (const line of spawnSync("readelf", ["-lW", image], { encoding: "utf8" }).stdout.split("\n")) {
    const m = /^\s*LOAD\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x[0-9a-f]+\s+0x([0-9a-f]+)/.exec(line);
    if (!m) continue;
    const [offset, start, size] = [m[1]!, m[2]!, m[3]!].map((h) => parseInt(h, 16));
    if (address >= start! && address < start! + size!) return offset! + address - start!;
  }
  throw new Error(`${symbol} is not in a loaded segment of ${image}`);
}

function run(image: string, accel: Accel, extra: string[] = [], appArgs: string[] = []) {
  const args = [cli, "run", image, "--accel", accel, ...extra, ...(appArgs.length ? ["--", ...appArgs] : [])];
  const r = spawnSync(process.execPath, args, { cwd: repo, encoding: "utf8", timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

for (const accel of accels) {
  describe(`examples under ${accel}`, () => {
    test("hello boots in 8 MiB, greets its arguments, orders timers by deadline and exits with the requested code", () => {
      const r = run(images.hello, accel, ["--mem", "8M"], ["Ada", "Grace Hopper", "--exit-code=3"]);
      assert.equal(r.status, 3, r.stdout + r.stderr);
      assert.match(r.stdout, /^Hello, Ada and Grace Hopper, from Torito!$/m);
      assert.match(r.stdout, /^args: \["Ada","Grace Hopper","--exit-code=3"\]$/m);
      assert.match(r.stdout, /^timers: 10 20 30$/m);
      const slept = Number(/^slept: (\d+) ms$/m.exec(r.stdout)?.[1]);
      assert.ok(slept >= 50 && slept < 1000, `slept ${slept} ms for a 50 ms timer`);
    });

    test("hello's Date is within a minute of the host's clock", () => {
      const r = run(images.hello, accel);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      const iso = /^date: (\S+)$/m.exec(r.stdout)?.[1];
      assert.ok(iso, r.stdout);
      const skew = Math.abs(Date.parse(iso) - Date.now());
      assert.ok(skew < 60_000, `guest date ${iso} is ${skew} ms away from the host's`);
    });

    test("an uncaught error prints the TypeScript stack and exits 1", () => {
      const r = run(images.crash, accel);
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /^starting$/m);
      assert.match(r.stdout, /^Uncaught Error: config is not JSON: "port = 8080"$/m);
      assert.match(r.stdout, /^ {4}at parseConfig \(examples\/crash\/crash\.ts:10:\d+\)$/m);
      assert.match(r.stdout, /^ {4}at loadConfig \(examples\/crash\/crash\.ts:16:\d+\)$/m);
      assert.doesNotMatch(r.stdout, /listening/);
    });

    test("an unhandled rejection prints the TypeScript stack and exits 1", () => {
      const r = run(images.rejection, accel);
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /^Uncaught \(in promise\) RangeError: quota exhausted$/m);
      assert.match(r.stdout, /at fetchQuota \(test\/fixtures\/apps\/rejection\.ts:4:\d+\)/);
    });

    test("a dynamically imported module is read when imported, once, and its stack maps to its source", () => {
      const r = run(images.lazy, accel);
      assert.equal(r.status, 1, r.stdout + r.stderr);
      const lines = r.stdout.split("\n");
      assert.deepEqual(lines.slice(0, 5), [
        "entry on core 0", "lazy module evaluated", "lazy module on core 0 of 1", "same module: true",
        "Uncaught (in promise) Error: lazy failure in the chunk",
      ]);
      // the frame inside the chunk and the entry's frame, each through its own file's table
      assert.match(r.stdout, /^ {4}at fail \(test\/fixtures\/apps\/lazy-module\.ts:12:\d+\)$/m);
      assert.match(r.stdout, /^ {4}at <anonymous> \(test\/fixtures\/apps\/lazy-import\.ts:10:\d+\)$/m);
    });

    test("code an app shares with a lazily imported module runs once, after the kernel's start-up", () => {
      const r = run(images.splitOrder, accel);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.equal(r.stdout, "shared module: 3 function function\nentry sees shared\nlazy sees entry sees shared\n");
    });

    test("a damaged module table stops the boot with a clear message; a damaged chunk fails only its import()", () => {
      const image = readFileSync(images.lazy);
      const at = fileOffset(images.lazy, "torito_app_bytecode");
      assert.equal(image.toString("latin1", at, at + 4), "TJM1");
      const damaged = (name: string, change: (copy: Buffer) => void) => {
        const copy = Buffer.from(image);
        change(copy);
        const path = join(scratch, `${accel}-${name}.elf`);
        writeFileSync(path, copy);
        return run(path, accel);
      };
      const noTable = damaged("magic", (b) => b.write("XJM1", at, "latin1"));
      assert.equal(noTable.status, 6, noTable.stdout + noTable.stderr);
      assert.match(noTable.stdout + noTable.stderr, /boot failed: the image holds no module table/);
      const badCount = damaged("count", (b) => b.writeUInt32LE(1_000_000, at + 4));
      assert.equal(badCount.status, 6, badCount.stdout + badCount.stderr);
      assert.match(badCount.stdout + badCount.stderr, /boot failed: the image's module table is corrupt/);
      const badChunk = damaged("chunk", (b) => {
        for (let i = 0; i < b.readUInt32LE(at + 4); i++) {
          const data = at + b.readUInt32LE(at + 16 + 16 * i), length = b.readUInt32LE(at + 20 + 16 * i);
          if (b.subarray(data, data + length).includes("lazy module evaluated")) b.fill(0, data + 1, data + 65);
        }
      });
      // the damage shows when the chunk is imported, after the entry ran: it is read then, not at boot
      assert.equal(badChunk.status, 1, badChunk.stdout + badChunk.stderr);
      assert.match(badChunk.stdout, /^entry on core 0\nUncaught \(in promise\) \[SyntaxError: image module 'chunk-[A-Z0-9]+\.js' is damaged: SyntaxError: /);
    });

    test("an exhausted JavaScript heap is reported as such and exits 4", () => {
      const r = run(images.oom, accel, ["--mem", "8M"]);
      assert.equal(r.status, 4, r.stdout + r.stderr);
      assert.match(r.stdout, /^fatal: JavaScript heap out of memory on core 0 \(limit \d+ KiB/m);
    });

    test("a CPU fault in ring 3 prints the registers and the JavaScript stack, and exits 3", () => {
      const r = run(images.fault, accel);
      assert.equal(r.status, 3, r.stdout + r.stderr);
      assert.match(r.stdout, /^\*\*\* CPU fault: #GP general protection \(vector 0x0+d, error 0x0+\) in ring 3$/m);
      assert.match(r.stdout, /^rip 0x[0-9a-f]{16} rsp 0x[0-9a-f]{16}/m);
      assert.match(r.stdout, /^JavaScript stack at the fault:$/m);
      assert.match(r.stdout, /at probeKeyboardController \(test\/fixtures\/apps\/fault\.ts:7:\d+\)/);
      assert.doesNotMatch(r.stdout, /unreachable/);
    });

    test("TextEncoder and TextDecoder in the guest agree with Node's, lone surrogates included", () => {
      const r = run(images.encoding, accel);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      const [encoded, decoded] = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as unknown);
      const samples = ["", "ascii", "héllo wörld", "€𝄞😀", "lone \ud800 high", "lone \udc00 low", "pair \ud83d\ude00 ok", "\u0000nul"];
      assert.deepEqual(encoded, samples.map((s) => Array.from(new TextEncoder().encode(s))));
      const dec = new TextDecoder();
      assert.deepEqual(decoded, [[0xc3, 0xa9], [0xff, 0x41], [0xe2, 0x82], [0xf0, 0x9f, 0x98, 0x80]].map((b) => dec.decode(new Uint8Array(b))));
    });

    test("console output reaches a reader that stalls for 2 s, every byte of 2000 lines", async () => {
      // stdout is a socketpair here, as under any Node parent; QEMU used to drop bytes once
      // a few hundred one-byte writes filled it.
      const child = spawn(process.execPath, [cli, "run", images.chatty, "--accel", accel], { cwd: repo, stdio: ["ignore", "pipe", "pipe"] });
      child.stdout.pause();
      const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
      await new Promise((r) => setTimeout(r, 2000));
      let out = "";
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk)).resume();
      await new Promise((r) => child.stdout.once("end", r));
      assert.equal(await exited, 0);
      const lines = out.split("\n");
      assert.equal(lines.pop(), "");
      assert.equal(lines.length, 2000, `got ${lines.length} lines`);
      lines.forEach((line, i) => {
        const m = /^(line (\d{4}) .{36}) ([0-9a-f]{8})$/.exec(line);
        assert.ok(m && Number(m[2]) === i, `line ${i} is ${JSON.stringify(line)}`);
        let sum = 0;
        for (let k = 0; k < m[1].length; k++) sum = (sum * 31 + m[1].charCodeAt(k)) >>> 0;
        assert.equal(sum.toString(16).padStart(8, "0"), m[3], `line ${i} is damaged: ${JSON.stringify(line)}`);
      });
    });

    test("cyclic garbage with the heap 60 % full of live data is collected before the heap runs out", () => {
      const r = run(images.cyclic, accel, ["--mem", "12M"]);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^cyclic garbage: survived with \d+ live arrays; peak \d+% of the heap$/m);
    });

    test("a runaway guest is stopped by --timeout with exit code 124", () => {
      const started = Date.now();
      const r = run(images.spin, accel, ["--timeout", "1"]);
      assert.equal(r.status, 124, r.stdout + r.stderr);
      assert.match(r.stdout, /^spinning$/m);
      assert.match(r.stderr, /^torito: guest timed out after 1 s$/m);
      assert.ok(Date.now() - started < 10_000, "the timeout took too long to stop the guest");
    });
  });
}
