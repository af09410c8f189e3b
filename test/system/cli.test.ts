// The `torito` CLI as a user sees it: real processes (node bin/torito.js), real QEMU, fixture
// images. Runs under KVM when /dev/kvm is usable; TORITO_ACCEL=tcg runs the same suite on TCG.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { buildImage, readLayout } from "../../host/build.ts";
import { SourceMaps } from "../../kernel/sourcemap.ts";
import { kvmUsable } from "../../host/run.ts";
import { pvhTestImage, PVH_TEST_VARIANTS, type PvhTestVariant } from "../fixtures/pvh-test-image.ts";
import { freePort } from "../helpers/ports.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "../..");
const cli = join(repo, "bin/torito.js");
const work = mkdtempSync(join(tmpdir(), "torito-cli-test-"));
const images = {} as Record<PvhTestVariant, string>;
// Pin the default accelerator so that no "falling back to tcg" note reaches stderr.
const defaultAccelForTests = process.env["TORITO_ACCEL"] || (kvmUsable().ok ? "kvm" : "tcg");


before(() => {
  for (const variant of Object.keys(PVH_TEST_VARIANTS) as PvhTestVariant[]) images[variant] = pvhTestImage(variant);
  // Bundle the CLI once up front so no test pays (or times) the first esbuild run.
  torito(["--help"]);
});
after(() => rmSync(work, { recursive: true, force: true }));

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** A fresh directory to use as TMPDIR, so leftovers of one run are visible in isolation. */
function privateTmp(name: string): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

function torito(args: string[], env: NodeJS.ProcessEnv = process.env): Result {
  const r = spawnSync(process.execPath, [cli, ...args], {
    cwd: repo, env: { TORITO_ACCEL: defaultAccelForTests, ...env }, encoding: "utf8", timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Asserts exit code 2 and exactly one `torito: error: ...` line on stderr. */
function assertUsageError(args: string[], message: RegExp, env?: NodeJS.ProcessEnv): void {
  const r = torito(args, env);
  assert.equal(r.status, 2, `exit code of torito ${args.join(" ")}; stderr: ${r.stderr}`);
  const lines = r.stderr.split("\n").filter((l) => l !== "");
  assert.equal(lines.length, 1, `one stderr line expected, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^torito: error: /);
  assert.match(lines[0]!, message);
  assert.equal(r.stdout, "");
}

describe("usage errors: one line on stderr, exit code 2", () => {
  const cases: [string, string[], RegExp][] = [
    ["no command", [], /missing command/],
    ["unknown command", ["frobnicate"], /unknown command 'frobnicate'/],
    ["unknown flag", ["run", "x.elf", "--memory", "8M"], /unknown option --memory for 'torito run'/],
    ["missing flag value", ["run", "x.elf", "--mem"], /--mem needs a value/],
    ["bad size", ["run", "IMG", "--mem", "8X"], /bad --mem '8X'/],
    ["size too small", ["run", "IMG", "--mem", "1M"], /between 2M and 3G/],
    ["size too large", ["run", "IMG", "--mem", "4G"], /between 2M and 3G/],
    ["bad --cpus", ["run", "IMG", "--cpus", "17"], /bad --cpus '17'/],
    ["bad --accel", ["run", "IMG", "--accel", "hvf"], /bad --accel 'hvf' \(expected kvm or tcg\)/],
    ["bad --port", ["run", "IMG", "--port", "8080"], /bad --port '8080'/],
    ["port out of range", ["run", "IMG", "--port", "70000:80"], /bad --port '70000:80'/],
    ["bad --timeout", ["run", "IMG", "--timeout", "soon"], /bad --timeout 'soon'/],
    ["app args without --", ["run", "IMG", "hello"], /unexpected argument 'hello' \(app arguments go after --\)/],
    ["missing image", ["run", join(work, "nope.elf")], /image '.*nope\.elf' not found/],
    ["not an ELF", ["run", join(repo, "package.json")], /is not an ELF file/],
    ["no PVH note", ["run", "NO_NOTE"], /has no PVH entry note/],
    ["image too big for --mem", ["run", "IMG", "--mem", "2M"], /--mem 2M is too small/],
    ["--fs not a directory", ["run", "IMG", "--fs", join(work, "nodir")], /--fs '.*nodir' is not a directory/],
    ["--disk missing", ["run", "IMG", "--disk", join(work, "nodisk.img")], /--disk '.*nodisk\.img' is not a file/],
    ["build without -o", ["build", "app.ts"], /'torito build' needs -o <image\.elf>/],
    ["build missing entry", ["build", join(work, "nope.ts"), "-o", join(work, "x.elf")], /entry '.*nope\.ts' not found/],
    ["setup with a value", ["setup", "--quiet=yes"], /--quiet takes no value/],
  ];
  for (const [name, args, message] of cases) {
    test(name, () => {
      const resolved = args.map((a) => (a === "IMG" ? images.hello : a === "NO_NOTE" ? images.noNote : a));
      assertUsageError(resolved, message);
    });
  }

  test("not x86-64", () => {
    const elf32 = join(work, "i386.elf");
    const header = Buffer.alloc(64);
    header.write("\x7fELF\x01\x01\x01", 0, "latin1");
    header.writeUInt16LE(3, 18); // EM_386
    writeFileSync(elf32, header);
    assertUsageError(["run", elf32], /is not an x86-64 ELF/);
  });

  test("QEMU not on PATH", () => {
    const emptyBin = join(work, "empty-bin");
    mkdirSync(emptyBin, { recursive: true });
    assertUsageError(["run", images.hello], /^torito: error: qemu-system-x86_64 not found: run `npx torito setup`$/, { ...process.env, PATH: emptyBin });
  });

  test("bad TORITO_ACCEL", () => {
    assertUsageError(["run", images.hello], /bad TORITO_ACCEL 'fast'/, { ...process.env, TORITO_ACCEL: "fast" });
  });
});

describe("help", () => {
  for (const args of [["--help"], ["help"], ["help", "run"], ["run", "--help"], ["build", "-h"], ["setup", "--help"]]) {
    test(`torito ${args.join(" ")} prints usage and exits 0`, () => {
      const r = torito(args);
      assert.equal(r.status, 0);
      assert.match(r.stdout, /^Usage: torito /);
      assert.equal(r.stderr, "");
    });
  }
});

describe("--dry-run", () => {
  test("prints the exact QEMU command line on one line", () => {
    const r = torito(["run", images.hello, "--dry-run", "--accel", "kvm", "--mem", "16M", "--", "a", "b c"]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.equal(r.stdout,
      "qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=off,acpi=off -accel kvm -m 16M -smp 1 -nodefaults " +
      "-no-user-config -nographic -no-reboot -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4 " +
      `-fw_cfg name=opt/torito/seed,file=${join(tmpdir(), "torito-run-XXXXXX", "seed")} ` +
      `-kernel ${images.hello} -append 'torito.accel=kvm -- a "b c"'\n`);
  });

  test("with --fs prints the virtiofsd line first", () => {
    const r = torito(["run", images.hello, "--dry-run", "--accel", "tcg", "--cpus", "2", "--fs", work, "--port", "8080:80"]);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 2);
    assert.match(lines[0]!, /^\/usr\/lib\/qemu\/virtiofsd --socket-path=\S+virtiofsd\.sock -o source=\S+ -o cache=auto &$/);
    assert.match(lines[1]!, /^qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=on,acpi=on,memory-backend=mem -accel tcg /);
    assert.match(lines[1]!, /hostfwd=tcp:127\.0\.0\.1:8080-:80/);
  });

  test("TORITO_ACCEL picks the default accelerator", () => {
    const r = torito(["run", images.hello, "--dry-run"], { ...process.env, TORITO_ACCEL: "tcg" });
    assert.match(r.stdout, /-accel tcg .*torito\.accel=tcg/);
  });
});

describe("running fixture images under QEMU", () => {
  test("an app inside this package but outside its sideEffects folders still runs (torito build keeps the entry)", () => {
    const dir = mkdtempSync(join(repo, "build", "entry-test-"));
    try {
      writeFileSync(join(dir, "app.ts"), 'console.log("the app ran");\n');
      const built = torito(["build", join(dir, "app.ts"), "-o", join(dir, "app.elf")]);
      assert.equal(built.status, 0, built.stderr);
      const r = torito(["run", join(dir, "app.elf")]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, "the app ran\n");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("console output reaches stdout and exit 0 is passed through", () => {
    const r = torito(["run", images.hello, "--mem", "8M"]);
    assert.equal(r.stdout, "hi\n");
    assert.equal(r.stderr, "", "QEMU's CPUID warning is filtered");
    assert.equal(r.status, 0);
  });

  test("the guest's exit code is translated back (3 and 127)", () => {
    assert.equal(torito(["run", images.exit3]).status, 3);
    assert.equal(torito(["run", images.exit127]).status, 127);
  });

  test("the VMM floor image exits 0 without output", () => {
    const r = torito(["run", images.floor, "--mem", "4M"]);
    assert.deepEqual([r.status, r.stdout, r.stderr], [0, "", ""]);
  });

  test("a guest that never exits is killed by --timeout with exit 124", () => {
    const started = Date.now();
    const r = torito(["run", images.loop, "--timeout", "1"]);
    assert.equal(r.status, 124);
    assert.equal(r.stdout, "hi\n");
    assert.equal(r.stderr, "torito: guest timed out after 1 s\n");
    assert.ok(Date.now() - started < 5000);
  });

  test("a guest that stops without an exit code exits 70", () => {
    const r = torito(["run", images.fault, "--timeout", "20"]);
    assert.equal(r.status, 70, r.stderr);
    // Under TCG and hardware KVM the triple fault shuts the VM down; this machine's software
    // KVM reports an emulation failure instead.
    assert.match(r.stderr, /torito: guest (stopped without an exit code \(triple fault or reset\?\)|crashed: KVM internal error)/);
  });

  test("all devices at once: virtio-fs (virtiofsd), virtio-net with forwards, virtio-blk, 2 CPUs", async () => {
    const disk = join(work, "disk.img");
    writeFileSync(disk, Buffer.alloc(1024 * 1024));
    const share = join(work, "share");
    mkdirSync(share, { recursive: true });
    const tmp = privateTmp("run-tmp");
    const port = await freePort();
    const r = torito(["run", images.exit3, "--cpus", "2", "--mem", "16M", "--fs", share, "--disk", disk, "--port", `${port}:80`, "--", "x"], { ...process.env, TMPDIR: tmp });
    assert.equal(r.status, 3, r.stderr);
    assert.equal(r.stdout, "hi\n");
    assert.deepEqual(readdirSync(tmp), [], "temporary run directories are removed");
  });

  test("QEMU's own failure (host port taken) passes its message and exits 1", async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    try {
      const r = torito(["run", images.hello, "--port", `${port}:80`]);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /^qemu-system-x86_64: .*host forwarding rule/m);
      assert.equal(r.stdout, "");
    } finally {
      server.close();
    }
  });

  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    test(`${signal} to the CLI stops QEMU and exits ${code}`, async () => {
      const child = spawn(process.execPath, [cli, "run", images.loop], { stdio: ["pipe", "pipe", "pipe"], env: { TORITO_ACCEL: defaultAccelForTests, ...process.env } });
      let stdout = "";
      await new Promise<void>((resolve) => child.stdout.on("data", (d: Buffer) => {
        stdout += d.toString();
        if (stdout.includes("hi\n")) resolve();
      }));
      const qemuPids = pgrep(String(child.pid));
      assert.equal(qemuPids.length, 1, "found the QEMU child");
      child.kill(signal);
      const status = await new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
      assert.equal(status, code);
      await new Promise((r) => setTimeout(r, 200));
      for (const pid of qemuPids) assert.equal(alive(pid), false, `QEMU ${pid} outlived the CLI`);
    });
  }

  test("QEMU stopped from outside (SIGTERM to QEMU itself) is reported as such, exit 143", async () => {
    const child = spawn(process.execPath, [cli, "run", images.loop], { stdio: ["pipe", "pipe", "pipe"], env: { TORITO_ACCEL: defaultAccelForTests, ...process.env } });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
    const qemuPids = pgrep(String(child.pid));
    assert.equal(qemuPids.length, 1, "found the QEMU child");
    process.kill(qemuPids[0]!, "SIGTERM");
    const status = await new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
    assert.equal(status, 143, stderr);
    assert.match(stderr, /^torito: error: qemu-system-x86_64 was stopped from outside by signal 15$/m);
    assert.doesNotMatch(stderr, /triple fault/);
  });

  test("QEMU dies with the CLI even when the CLI is SIGKILLed", async () => {
    const child = spawn(process.execPath, [cli, "run", images.loop], { stdio: ["pipe", "pipe", "pipe"], env: { TORITO_ACCEL: defaultAccelForTests, ...process.env } });
    await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
    const qemuPids = pgrep(String(child.pid));
    assert.ok(qemuPids.length === 1, "found the QEMU child");
    child.kill("SIGKILL");
    await new Promise((resolve) => child.on("close", resolve));
    const deadline = Date.now() + 3000;
    while (qemuPids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const pid of qemuPids) assert.equal(alive(pid), false, `QEMU ${pid} outlived the CLI`);
  });
});

describe("torito build: the source map tables", () => {
  test("go below 2 MiB (cold data) when they fit, among the read-only data when they do not; stacks map either way", async () => {
    const dir = join(work, "maps");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "small.ts"), `function boom(): never {\n  throw new Error("SMALL");\n}\nboom();\n`);
    // 20,000 more generated lines: tables larger than the room below 2 MiB (576 KiB)
    const lines = ["const table: number[] = [];"];
    for (let i = 0; i < 20_000; i++) lines.push(`table.push(${i});`);
    lines.push(`function boom(): never {`, `  throw new Error("BIG " + table.length);`, `}`, `boom();`, ``);
    writeFileSync(join(dir, "big.ts"), lines.join("\n"));
    const address = (image: string, symbol: string) =>
      parseInt(new RegExp(`^([0-9a-f]+) R ${symbol}$`, "m").exec(spawnSync("nm", [image], { encoding: "utf8" }).stdout)?.[1] ?? "", 16);
    const { coldBase, runtimeBase } = readLayout(repo);
    for (const [name, cold, message, line] of [["small", true, "SMALL", 2], ["big", false, "BIG 20000", 20_003]] as const) {
      const image = join(dir, `${name}.elf`);
      await buildImage({ entry: `maps/${name}.ts`, output: image, cwd: work });
      const at = address(image, "torito_app_sourcemap"), end = address(image, "torito_app_sourcemap_end");
      assert.equal(at >= coldBase && end <= runtimeBase, cold, `${name}: tables at 0x${at.toString(16)}-0x${end.toString(16)}`);
      assert.equal(at >= runtimeBase, !cold);
      const r = torito(["run", image]);
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.match(r.stdout, new RegExp(`^Uncaught Error: ${message}\n {4}at boom \\(maps/${name}\\.ts:${line}:\\d+\\)$`, "m"));
    }
  });
});

describe("torito build (fake platform: copying qjsc, fixture object as the platform)", () => {
  test("links bytecode and source map into an image that boots, in well under a second", async () => {
    // A repo with the layout buildImage expects, whose "platform" is the PVH test object.
    const fake = join(work, "fake-repo");
    mkdirSync(join(fake, "kernel"), { recursive: true });
    mkdirSync(join(fake, "build/quickjs/host"), { recursive: true });
    mkdirSync(join(fake, "build/platform"), { recursive: true });
    writeFileSync(join(fake, "kernel/init.ts"), `(globalThis as any).marker = "KERNEL_INIT";\nexport {};\n`);
    writeFileSync(join(fake, "kernel/api.ts"), `export const version = "API_MODULE";\n`);
    // Stands in for qjsc -c: emits the input file's bytes as the C array, named as qjsc names it.
    const qjsc = join(fake, "build/quickjs/host/qjsc");
    writeFileSync(qjsc, `#!${process.execPath}
const fs = require("fs");
const a = process.argv.slice(2);
const out = a[a.indexOf("-o") + 1], input = a[a.length - 1];
const name = "qjsc_" + require("path").basename(input).replace(/\\.[^.]*$/, "").replace(/[^0-9A-Za-z]/g, "_");
const bytes = [...fs.readFileSync(input)].map((b) => "0x" + b.toString(16).padStart(2, "0"));
fs.writeFileSync(out, "const uint32_t " + name + "_size = " + bytes.length + ";\\n\\nconst uint8_t " + name + "[" + bytes.length + "] = {\\n " + bytes.join(", ") + ",\\n};\\n");
`);
    chmodSync(qjsc, 0o755);
    writeFileSync(join(fake, "build/platform/link.ld"), `OUTPUT_FORMAT("elf64-x86-64")
ENTRY(_start)
PHDRS { text PT_LOAD FLAGS(5); note PT_NOTE FLAGS(4); }
SECTIONS {
  . = 0x100000;
  .note.Xen : { *(.note.Xen) } :text :note
  .text : { *(.text) } :text
  .rodata : { *(.rodata .rodata.*) *(.cold .cold.*) } :text
  /DISCARD/ : { *(.note.GNU-stack) }
}
`);
    const fixtureObject = images.hello.replace(/\.elf$/, ".o");
    writeFileSync(join(fake, "build/platform/link.txt"), `# inputs\n--start-group\n${fixtureObject}\n--end-group\n`);
    writeFileSync(join(fake, "build/platform/layout.txt"), `cold_base 0x170000\nruntime_base 0x200000\n`);
    const appDir = join(work, "apps/hello");
    mkdirSync(appDir, { recursive: true });
    writeFileSync(join(appDir, "app.ts"), `import { version } from "torito";\nconsole.log("APP_BODY", version);\nvoid import("./later.ts");\n`);
    writeFileSync(join(appDir, "later.ts"), `console.log("LAZY_CHUNK");\n`);

    const output = join(work, "out/hello.elf");
    const logs: string[] = [];
    const savedTmp = process.env["TMPDIR"];
    const tmp = privateTmp("build-tmp");
    process.env["TMPDIR"] = tmp; // os.tmpdir() reads it on every call
    let result;
    try {
      await buildImage({ entry: "apps/hello/app.ts", output, cwd: work, repo: fake, log: (l) => logs.push(l) }); // warm esbuild
      result = await buildImage({ entry: "apps/hello/app.ts", output, cwd: work, repo: fake });
    } finally {
      if (savedTmp === undefined) delete process.env["TMPDIR"];
      else process.env["TMPDIR"] = savedTmp;
    }
    assert.deepEqual(readdirSync(tmp), [], "temporary build directories are removed");
    assert.ok(result.timings.total < 1000, `build took ${result.timings.total} ms`);
    assert.equal(logs.length, 2);
    assert.match(logs[1]!, /out\/hello\.elf: [\d.]+ KiB in \d+ ms/);

    const bytes = readFileSync(output);
    const image = bytes.toString("latin1");
    const symbols = spawnSync("nm", [output], { encoding: "utf8" }).stdout;
    for (const s of ["torito_app_bytecode", "torito_app_bytecode_end", "torito_app_sourcemap", "torito_app_sourcemap_end"]) {
      assert.match(symbols, new RegExp(` R ${s}\\n`));
    }
    // The module table: module 0 imports the kernel's start-up, then the app; the chunk split
    // off for the dynamic import() is a module of its own. (This qjsc copies each file.)
    const modulesAt = image.indexOf("TJM1");
    assert.ok(modulesAt > 0, "module table is linked");
    const modules = new Map(Array.from({ length: bytes.readUInt32LE(modulesAt + 4) }, (_, i) => {
      const [name, nameLength, data, dataLength] = [0, 4, 8, 12].map((o) => bytes.readUInt32LE(modulesAt + 8 + 16 * i + o));
      return [image.slice(modulesAt + name!, modulesAt + name! + nameLength!), image.slice(modulesAt + data!, modulesAt + data! + dataLength!)] as const;
    }));
    const names = [...modules.keys()];
    assert.deepEqual(names.map((n) => n.replace(/^chunk-[A-Z0-9]+\.js$/, "chunk-*.js")), ["app.js", "chunk-*.js", "kernel.js", "main.js"]);
    assert.equal(modules.get("app.js"), `import "./kernel.js";\nimport "./main.js";\n`);
    assert.match(modules.get("kernel.js")!, /KERNEL_INIT/);
    assert.match(modules.get("main.js")!, /APP_BODY/);
    assert.match(modules.get("main.js")!, /API_MODULE/, `"torito" resolved to kernel/api.ts`);
    assert.match(modules.get(names[1]!)!, /LAZY_CHUNK/);
    // One source map table per module, each naming its file.
    const address = (symbol: string) => parseInt(new RegExp(`^([0-9a-f]+) R ${symbol}$`, "m").exec(symbols)![1]!, 16);
    const tablesAt = image.indexOf("TSM1");
    const maps = new SourceMaps(bytes.subarray(tablesAt, tablesAt + address("torito_app_sourcemap_end") - address("torito_app_sourcemap")));
    assert.deepEqual(maps.tables.map((t) => [t.file, t.sources]), [
      ["app.js", []], [names[1], ["apps/hello/later.ts"]], ["kernel.js", ["fake-repo/kernel/init.ts"]],
      ["main.js", ["fake-repo/kernel/api.ts", "apps/hello/app.ts"]],
    ]);

    const r = torito(["run", output]);
    assert.deepEqual([r.status, r.stdout], [0, "hi\n"]);
  });

  test("platform not built: clear message, exit 1", () => {
    // A copy of the sources without build/: what a user sees before `torito setup` ran.
    const fresh = join(work, "fresh-checkout");
    mkdirSync(fresh, { recursive: true });
    for (const entry of ["bin", "host", "kernel", "package.json"]) cpSync(join(repo, entry), join(fresh, entry), { recursive: true });
    symlinkSync(join(repo, "node_modules"), join(fresh, "node_modules"));
    const app = join(work, "plain.ts");
    writeFileSync(app, "export {};\n");
    const r = spawnSync(process.execPath, [join(fresh, "bin/torito.js"), "build", app, "-o", join(work, "plain.elf")], {
      cwd: work, encoding: "utf8", timeout: 60_000,
    });
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stderr, "torito: error: platform not built: run `npx torito setup`\n");
  });
});

/** PIDs of QEMU processes whose ancestry includes `parentPid` (through setpriv's exec). */
function pgrep(parentPid: string): number[] {
  const out = spawnSync("pgrep", ["-P", parentPid, "-f", "qemu-system-x86_64"], { encoding: "utf8" }).stdout;
  return out.split("\n").filter((l) => l !== "").map(Number);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie awaiting its reaper is dead for our purpose.
  const stat = spawnSync("ps", ["-o", "stat=", "-p", String(pid)], { encoding: "utf8" }).stdout.trim();
  return stat !== "" && !stat.startsWith("Z");
}
