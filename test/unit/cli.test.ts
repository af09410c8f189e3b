// Units of the host CLI: argument parsing, sizes, QEMU command line, ELF checks, build helpers.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { TraceMap, originalPositionFor } from "@jridgewell/trace-mapping";
import { appAssembly, bundleApp, encodeModuleTable, formatEsbuildErrors, lowerBlockScopes, parseQjscArrays, qjscName, BundleError } from "../../host/build.ts";
import { RUN_FLAGS, parseArgs, runOptionsFromArgs, type FlagSpec } from "../../host/cli.ts";
import {
  UsageError, checkImageFits, defaultAccel, inspectImage, kernelCommandLine, parseMem, parsePort, parseSize,
  parseTimeout, qemuArgs, quoteKernelArg, shellQuote, writeBootSeed, BOOT_SEED_BYTES, type RunOptions,
} from "../../host/run.ts";
import { pvhTestImage } from "../fixtures/pvh-test-image.ts";
import { parseCmdline } from "../../kernel/cmdline.ts";

const MIB = 1024 * 1024;

describe("parseArgs", () => {
  const spec: Record<string, FlagSpec> = {
    output: { kind: "value", short: "o" },
    verbose: { kind: "boolean" },
    port: { kind: "list" },
  };

  test("accepts --flag value, --flag=value, -o value, repeated lists and positionals", () => {
    const args = parseArgs(["a.ts", "-o", "x.elf", "--verbose", "--port=1:2", "--port", "3:4"], spec, "t");
    assert.deepEqual(args.positionals, ["a.ts"]);
    assert.equal(args.flags.get("output"), "x.elf");
    assert.equal(args.flags.get("verbose"), true);
    assert.deepEqual(args.flags.get("port"), ["1:2", "3:4"]);
    assert.equal(args.rest, null);
  });

  test("everything after -- is rest when allowed, even flags", () => {
    const args = parseArgs(["img", "--", "--verbose", "x"], spec, "run", true);
    assert.deepEqual(args.rest, ["--verbose", "x"]);
    assert.equal(args.flags.has("verbose"), false);
  });

  const bad: [string[], RegExp][] = [
    [["--nope"], /^unknown option --nope for 'torito t'/],
    [["-x"], /^unknown option -x/],
    [["--output"], /^--output needs a value$/],
    [["-o"], /^-o needs a value$/],
    [["--output", "--verbose"], /^--output needs a value$/],
    [["--verbose=yes"], /^--verbose takes no value$/],
    [["-o", "a", "-o", "b"], /^-o given more than once$/],
    [["--", "x"], /takes no arguments after --/],
  ];
  for (const [argv, message] of bad) {
    test(`rejects ${JSON.stringify(argv)}`, () => {
      assert.throws(() => parseArgs(argv, spec, "t"), (e: unknown) => e instanceof UsageError && message.test(e.message));
    });
  }
});

describe("parseSize and parseMem", () => {
  test("suffixes are binary and case-insensitive, with optional iB/B", () => {
    assert.equal(parseSize("8M"), 8 * MIB);
    assert.equal(parseSize("16m"), 16 * MIB);
    assert.equal(parseSize("1G"), 1024 * MIB);
    assert.equal(parseSize("1GiB"), 1024 * MIB);
    assert.equal(parseSize("512KiB"), 512 * 1024);
    assert.equal(parseSize("4kb"), 4096);
    assert.equal(parseSize("8388608"), 8 * MIB);
    assert.equal(parseSize("100b"), 100);
  });

  for (const text of ["", "M", "1.5G", "-1M", "8 M", "8T", "0x10", "8MiBs"]) {
    test(`rejects size '${text}'`, () => assert.throws(() => parseSize(text), UsageError));
  }

  test("--mem range is 2 MiB ..= 3 GiB, page multiple", () => {
    assert.equal(parseMem("2M"), 2 * MIB);
    assert.equal(parseMem("3G"), 3 * 1024 * MIB);
    assert.throws(() => parseMem("1M"), /between 2M and 3G/);
    assert.throws(() => parseMem("3073M"), /between 2M and 3G/);
    assert.throws(() => parseMem("2097153"), /multiple of 4K/);
  });
});

describe("other option values", () => {
  test("--port HOST:GUEST binds 127.0.0.1 unless an address is given", () => {
    assert.deepEqual(parsePort("8080:80"), { address: "127.0.0.1", hostPort: 8080, guestPort: 80 });
    assert.deepEqual(parsePort("0.0.0.0:1:65535"), { address: "0.0.0.0", hostPort: 1, guestPort: 65535 });
    for (const bad of ["8080", "0:80", "80:65536", "a:b", "8080:80:1", ":80", "123456:1"]) {
      assert.throws(() => parsePort(bad), /bad --port/, bad);
    }
  });

  test("--timeout takes positive seconds", () => {
    assert.equal(parseTimeout("2"), 2);
    assert.equal(parseTimeout("0.5"), 0.5);
    for (const bad of ["0", "-1", "x", "1s", ""]) assert.throws(() => parseTimeout(bad), /bad --timeout/);
  });

  test("TORITO_ACCEL forces the default accelerator and is validated", () => {
    const notes: string[] = [];
    assert.equal(defaultAccel((l) => notes.push(l), { TORITO_ACCEL: "tcg" }), "tcg");
    assert.equal(defaultAccel((l) => notes.push(l), { TORITO_ACCEL: "kvm" }), "kvm");
    assert.deepEqual(notes, []);
    assert.throws(() => defaultAccel(() => {}, { TORITO_ACCEL: "hvf" }), /bad TORITO_ACCEL 'hvf'/);
  });

  test("run options: --cpus range, duplicate host ports, extra positionals", () => {
    const run = (argv: string[]) => runOptionsFromArgs(parseArgs(argv, {
      mem: { kind: "value" }, cpus: { kind: "value" }, accel: { kind: "value" }, timeout: { kind: "value" },
      port: { kind: "list" }, fs: { kind: "value" }, disk: { kind: "value" }, "dry-run": { kind: "boolean" },
    }, "run", true), () => {});
    assert.equal(run(["i.elf", "--cpus", "16", "--accel", "tcg"]).cpus, 16);
    assert.throws(() => run(["i.elf", "--cpus", "0"]), /bad --cpus '0'/);
    assert.throws(() => run(["i.elf", "--cpus", "17"]), /bad --cpus '17'/);
    assert.throws(() => run(["i.elf", "--cpus", "2x"]), /bad --cpus/);
    assert.throws(() => run(["i.elf", "--port", "80:1", "--port", "80:2"]), /forwarded twice/);
    assert.throws(() => run(["i.elf", "extra"]), /unexpected argument 'extra' \(app arguments go after --\)/);
    assert.throws(() => run([]), /needs an image file/);
    assert.deepEqual(run(["i.elf", "--accel", "kvm", "--", "a", "b"]).appArgs, ["a", "b"]);
  });
});

describe("QEMU command line", () => {
  const base: RunOptions = { image: "/img.elf", memBytes: 16 * MIB, cpus: 1, accel: "kvm", ports: [], appArgs: [] };

  test("app arguments are quoted only when needed", () => {
    assert.equal(quoteKernelArg("plain"), "plain");
    assert.equal(quoteKernelArg("two words"), `"two words"`);
    assert.equal(quoteKernelArg(`say "hi"`), `"say \\"hi\\""`);
    assert.equal(quoteKernelArg(`a\\b`), `"a\\\\b"`);
    assert.equal(quoteKernelArg(""), `""`);
    assert.equal(quoteKernelArg("virtio_mmio.device=1"), `"virtio_mmio.device=1"`);
    assert.equal(kernelCommandLine("tcg", ["x", "y z"]), `torito.accel=tcg -- x "y z"`);
    assert.equal(kernelCommandLine("kvm", []), `torito.accel=kvm --`);
  });

  test("the kernel's command-line parser gets the app arguments back, despite QEMU's additions", () => {
    const args = ["plain", "two words", `q"uote`, `back\\slash`, "", "--", "virtio_mmio.device=x", "tab\there"];
    const line = kernelCommandLine("kvm", args) + " virtio_mmio.device=512@0xfeb00e00:12";
    const parsed = parseCmdline(line);
    assert.deepEqual(parsed.args, args);
    assert.equal(parsed.options.get("torito.accel"), "kvm");
    assert.ok(parsed.kernel.includes("virtio_mmio.device=512@0xfeb00e00:12"));
  });

  test("KVM, one CPU: fastest microvm options, no -cpu, console and debug-exit", () => {
    assert.deepEqual(qemuArgs(base), [
      "-M", "microvm,x-option-roms=off,rtc=off,acpi=off", "-accel", "kvm", "-m", "16M", "-smp", "1",
      "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-serial", "stdio",
      "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
      "-kernel", "/img.elf", "-append", "torito.accel=kvm --",
    ]);
  });

  test("TCG turns the RTC on; several CPUs turn ACPI on", () => {
    const args = qemuArgs({ ...base, accel: "tcg", cpus: 4, memBytes: 2 * MIB + 4096 });
    assert.equal(args[1], "microvm,x-option-roms=off,rtc=on,acpi=on");
    assert.deepEqual(args.slice(2, 8), ["-accel", "tcg", "-m", "2052K", "-smp", "4"]);
  });

  test("--port, --fs and --disk add their devices", () => {
    const args = qemuArgs({
      ...base,
      ports: [{ address: "127.0.0.1", hostPort: 8080, guestPort: 80 }, { address: "0.0.0.0", hostPort: 2222, guestPort: 22 }],
      fsDir: "/srv/site",
      virtiofsSocket: "/tmp/t/v.sock",
      disks: [{ path: "/data/a,b.img", readOnly: false }, { path: "/data/ro.img", readOnly: true }],
    });
    const line = args.join(" ");
    assert.match(args[1]!, /,memory-backend=mem$/);
    assert.match(line, /-object memory-backend-memfd,id=mem,size=16M,share=on /);
    assert.match(line, /-chardev socket,id=fs0,path=\/tmp\/t\/v.sock -device vhost-user-fs-device,chardev=fs0,tag=fs0 /);
    assert.match(line, /-netdev user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp:0.0.0.0:2222-:22 -device virtio-net-device,netdev=net0 /);
    assert.match(line, /-drive file=\/data\/a,,b.img,format=raw,if=none,id=disk0 -device virtio-blk-device,drive=disk0 /);
    assert.match(line, /-drive file=\/data\/ro.img,format=raw,if=none,id=disk1,readonly=on -device virtio-blk-device,drive=disk1 /);
    assert.throws(() => qemuArgs({ ...base, fsDir: "/srv" }), /virtiofsSocket/);
  });

  test("shellQuote leaves safe words bare and single-quotes the rest", () => {
    assert.equal(shellQuote(["a", "b c", "it's", "x=1,y"]), `a 'b c' 'it'\\''s' x=1,y`);
  });
});

describe("image checks", () => {
  test("a PVH fixture passes and reports its load end and entry", () => {
    const info = inspectImage(pvhTestImage("hello"));
    assert.equal(info.pvhEntry, 0x101000);
    assert.ok(info.loadEnd > 0x101000 && info.loadEnd < 0x102000, info.loadEnd.toString(16));
  });

  test("an ELF without the PVH note is refused", () => {
    assert.throws(() => inspectImage(pvhTestImage("noNote")), /no PVH entry note/);
  });

  test("memory must hold the image plus 1 MiB of heap", () => {
    checkImageFits({ loadEnd: MIB, pvhEntry: 0 }, 2 * MIB, "x");
    assert.throws(() => checkImageFits({ loadEnd: MIB + 1, pvhEntry: 0 }, 2 * MIB, "x"), /--mem 2M is too small for 'x'.*needs at least 3M/);
  });
});

describe("build helpers", () => {
  const work = mkdtempSync(join(tmpdir(), "torito-unit-"));
  after(() => rmSync(work, { recursive: true, force: true }));

  test("parseQjscArrays reads every module qjsc wrote, by the C name qjsc gives each file, and checks lengths", () => {
    const c = `/* File generated automatically by the QuickJS compiler. */\n\n#include <inttypes.h>\n\nconst uint32_t qjsc_chunk_AB2_size = 2;\n\nconst uint8_t qjsc_chunk_AB2[2] = {\n 0x01, 0x02,\n};\n\n` +
      `const uint32_t qjsc_app_size = 3;\n\nconst uint8_t qjsc_app[3] = {\n 0x03, 0x04,\n};\n`;
    const arrays = parseQjscArrays(c);
    assert.deepEqual([...arrays.keys()], ["qjsc_chunk_AB2", "qjsc_app"]);
    assert.deepEqual([...(arrays.get(qjscName("chunk-AB2.js")) as Uint8Array)], [1, 2]);
    assert.deepEqual([...(parseQjscArrays(c.replace("0x01, 0x02", "0x02, 0x0a, 0xff,\n 0x00, 0x7F").replace("AB2[2]", "AB2[5]")).get("qjsc_chunk_AB2") as Uint8Array)], [2, 10, 255, 0, 127]);
    assert.match(String(arrays.get(qjscName("app.js"))), /'qjsc_app' declares 3 bytes but holds 2/);
    assert.equal(qjscName("/w/x.y-z.js"), "qjsc_x_y_z");
  });

  test("encodeModuleTable: magic, count, then each module's name and bytecode by offset and length", () => {
    const table = encodeModuleTable([{ name: "app.js", bytecode: new Uint8Array([1, 2, 3]) }, { name: "chunk-Q.js", bytecode: new Uint8Array([9]) }]);
    const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
    assert.equal(Buffer.from(table.subarray(0, 4)).toString("latin1"), "TJM1");
    assert.equal(view.getUint32(4, true), 2);
    const modules = [0, 1].map((i) => {
      const at = 8 + 16 * i, name = view.getUint32(at, true), data = view.getUint32(at + 8, true);
      assert.equal(data % 8, 0, "bytecode is 8-byte aligned");
      return [Buffer.from(table.subarray(name, name + view.getUint32(at + 4, true))).toString(), [...table.subarray(data, data + view.getUint32(at + 12, true))]];
    });
    assert.deepEqual(modules, [["app.js", [1, 2, 3]], ["chunk-Q.js", [9]]]);
  });

  test("appAssembly defines the four symbols around the two blobs", () => {
    const s = appAssembly("/t/app.jsbc", `/t/we"ird.bin`);
    assert.match(s, /^\t\.section \.rodata\.torito_app,"a"\n\t\.balign 16\n/);
    assert.match(s, /\.globl torito_app_bytecode, torito_app_bytecode_end, torito_app_sourcemap, torito_app_sourcemap_end/);
    assert.match(s, /torito_app_bytecode:\n\t\.incbin "\/t\/app\.jsbc"\ntorito_app_bytecode_end:/);
    assert.match(s, /torito_app_sourcemap:\n\t\.incbin "\/t\/we\\"ird\.bin"\ntorito_app_sourcemap_end:/);
    assert.doesNotMatch(s, /\.cold/);
    // cold: the source map tables in their own section (the platform puts it below 2 MiB), the rest as before
    const cold = appAssembly("/t/app.jsbc", "/t/map.bin", "/t/files.bin", true);
    assert.match(cold, /\t\.section \.cold\.torito_sourcemap,"a"\n\t\.balign 16\ntorito_app_sourcemap:\n\t\.incbin "\/t\/map\.bin"\ntorito_app_sourcemap_end:\n\t\.section \.note\.GNU-stack/);
    assert.match(cold, /torito_app_bytecode_end:\n\t\.balign 16\ntorito_app_files:\n\t\.incbin "\/t\/files\.bin"\ntorito_app_files_end:/);
  });

  test("bundleApp puts the kernel first, resolves 'torito' from anywhere, maps sources relative to cwd", async () => {
    const repo = join(work, "repo");
    mkdirSync(join(repo, "kernel"), { recursive: true });
    writeFileSync(join(repo, "kernel/init.ts"), `(globalThis as any).kernelMarker = "KERNEL_FIRST";\nexport {};\n`);
    writeFileSync(join(repo, "kernel/api.ts"), `export function greet(name: string): string { return "hello " + name; }\n`);
    const appDir = join(work, "elsewhere/app");
    mkdirSync(appDir, { recursive: true });
    writeFileSync(join(appDir, "main.ts"), `import { greet } from "torito";\nconsole.log(greet("APP_SECOND"));\n`);
    const files = await bundleApp(join(appDir, "main.ts"), repo, join(work, "elsewhere"));
    // module 0 imports the kernel's start-up, then the app: two entry points of their own
    assert.deepEqual(files.map((f) => f.name), ["app.js", "kernel.js", "main.js"]);
    assert.equal(files[0]!.code, `import "./kernel.js";\nimport "./main.js";\n`);
    assert.match(files[1]!.code, /KERNEL_FIRST/);
    assert.doesNotMatch(files[1]!.code, /APP_SECOND/);
    const bundle = files[2]!;
    assert.equal(bundle.map.file, "main.js");
    assert.match(bundle.code, /APP_SECOND/);
    assert.match(bundle.code, /function greet\(name\)/);
    assert.ok(bundle.map.sources.includes("app/main.ts"), bundle.map.sources.join());
    assert.ok(bundle.map.sources.includes("../repo/kernel/api.ts"), bundle.map.sources.join());
    assert.equal(bundle.map.sourcesContent, undefined);

    mkdirSync(join(repo, "kernel/node"), { recursive: true });
    writeFileSync(join(repo, "kernel/node/path.ts"), `export const sep = "NODE_PATH_SHIM";\n`);
    writeFileSync(join(appDir, "node.ts"), `import { sep } from "node:path";\nconsole.log(sep);\n`);
    assert.match((await bundleApp(join(appDir, "node.ts"), repo, work))[2]!.code, /NODE_PATH_SHIM/);
    writeFileSync(join(appDir, "fs.ts"), `import { readFileSync } from "node:fs";\nconsole.log(readFileSync);\n`);
    await assert.rejects(bundleApp(join(appDir, "fs.ts"), repo, work),
      (e: unknown) => e instanceof BundleError && /^elsewhere\/app\/fs\.ts:1:\d+: "node:fs" is not available in torito/.test(e.lines[0]!));

    writeFileSync(join(appDir, "broken.ts"), `import { nope } from "./missing.ts";\nlet x = ;\n`);
    await assert.rejects(bundleApp(join(appDir, "broken.ts"), repo, work), (e: unknown) => {
      assert.ok(e instanceof BundleError);
      assert.ok(e.lines.length >= 1 && e.lines.every((l) => /^elsewhere\/app\/broken\.ts:\d+:\d+: /.test(l)), e.lines.join("\n"));
      return true;
    });
  });

  test("bundleApp splits a module reached only by import() into a chunk, with its own source map", async () => {
    const repo = join(work, "split");
    mkdirSync(join(repo, "kernel"), { recursive: true });
    writeFileSync(join(repo, "kernel/init.ts"), `export {};\n`);
    writeFileSync(join(repo, "kernel/api.ts"), `export const shared = "SHARED";\n`);
    writeFileSync(join(repo, "main.ts"), `import { shared } from "torito";\nconsole.log(shared);\nconst m = await import("./lazy.ts");\nconsole.log(m.lazy);\n`);
    writeFileSync(join(repo, "lazy.ts"), `import { shared } from "torito";\nexport const lazy = "LAZY_" + shared;\n`);
    const files = await bundleApp(join(repo, "main.ts"), repo, repo);
    // module 0, the lazy module's chunk, the code both use, the kernel's start-up and the app: each an ES module
    const names = files.map((f) => f.name);
    assert.deepEqual(names.map((n) => n.replace(/^chunk-[A-Z0-9]+\.js$/, "chunk")), ["app.js", "chunk", "chunk", "kernel.js", "main.js"]);
    const lazy = files.find((f) => f.code.includes("LAZY_"))!, shared = files.find((f) => f.code.includes("\"SHARED\""))!;
    const app = files.find((f) => f.name === "main.js")!;
    assert.ok(lazy.name.startsWith("chunk-") && shared.name.startsWith("chunk-") && lazy !== shared);
    assert.match(app.code, new RegExp(`import\\("\\./${lazy.name.replace(".", "\\.")}"\\)`));
    assert.match(app.code, new RegExp(`from "\\./${shared.name.replace(".", "\\.")}"`));
    assert.deepEqual([lazy.map.file, lazy.map.sources], [lazy.name, ["lazy.ts"]]);
    assert.deepEqual([shared.map.file, shared.map.sources], [shared.name, ["kernel/api.ts"]]);
  });

  test("lowerBlockScopes leaves no let/const binding, keeps per-iteration closures and maps back to the TypeScript", async () => {
    const repo = join(work, "lower");
    mkdirSync(join(repo, "kernel"), { recursive: true });
    writeFileSync(join(repo, "kernel/init.ts"), `export {};\n`);
    writeFileSync(join(repo, "kernel/api.ts"), `export {};\n`);
    writeFileSync(join(repo, "main.ts"), [
      `const fns: Array<() => number> = [];`,
      `for (let i = 0; i < 3; i++) { const j = i * 10; fns.push(() => i + j); }`,
      `class Box { constructor(readonly v: number) {} }`,
      `{ let hidden = 1; hidden++; (globalThis as any).hidden = hidden; }`,
      `let hidden = "outer";`,
      `(globalThis as any).lowered = [fns.map((f) => f()), new Box(7).v, hidden];`,
      `throw new Error("MARKER");`,
      ``,
    ].join("\n"));
    const lowered = await lowerBlockScopes((await bundleApp(join(repo, "main.ts"), repo, repo)).find((f) => f.name === "main.js")!);
    assert.doesNotMatch(lowered.code, /\b(let|const)\s/);
    const g = globalThis as { lowered?: unknown; hidden?: unknown };
    assert.throws(() => new Function(lowered.code)(), /MARKER/);
    assert.deepEqual(g.lowered, [[0, 11, 22], 7, "outer"]);
    assert.equal(g.hidden, 2);
    delete g.lowered;
    delete g.hidden;
    // the composed map still leads from the lowered code to the TypeScript line
    const lines = lowered.code.split("\n");
    const line = lines.findIndex((l) => l.includes("MARKER"));
    const pos = originalPositionFor(new TraceMap({ ...lowered.map, file: "app.js" }), { line: line + 1, column: lines[line]!.indexOf("throw") });
    assert.equal(pos.source, "main.ts");
    assert.equal(pos.line, 7);
  });

  test("formatEsbuildErrors caps the list", () => {
    const msg = { id: "", pluginName: "", text: "boom", location: null, notes: [], detail: undefined };
    const lines = formatEsbuildErrors(Array.from({ length: 12 }, () => msg));
    assert.equal(lines.length, 11);
    assert.equal(lines[10], "... and 2 more errors");
  });
});

describe("one NIC per core: --port ...@CORE, repeated --net, --mem-weights, --rng per core", () => {
  const options = (...argv: string[]) => runOptionsFromArgs(parseArgs(["x.elf", "--accel", "kvm", ...argv], RUN_FLAGS, "run"), () => {});
  const append = (argv: string[]) => argv[argv.indexOf("-append") + 1]!;

  test("ports name their core; each core named gets its own user network, in core order", () => {
    const argv = qemuArgs(options("--cpus", "2", "--port", "8081:80@1", "--port", "8080:80", "--port", "9090:90@1"));
    const line = argv.join(" ");
    assert.match(line, / -netdev user,id=net0,hostfwd=tcp:127\.0\.0\.1:8080-:80 -device virtio-net-device,netdev=net0 /);
    assert.match(line, / -netdev user,id=net1,hostfwd=tcp:127\.0\.0\.1:8081-:80,hostfwd=tcp:127\.0\.0\.1:9090-:90 -device virtio-net-device,netdev=net1 /);
    assert.match(append(argv), / torito\.owner\.net=0,1 /);
  });

  test("taps go to core i in order unless @CORE says; a list of addresses gives core i the i-th", () => {
    const argv = qemuArgs(options("--cpus", "2", "--net", "tap:a@1", "--net", "tap:b@0", "--ip", "10.0.0.2/24,10.0.1.2/24"));
    assert.match(argv.join(" "), /-netdev tap,id=net0,ifname=a,.* -netdev tap,id=net1,ifname=b,/);
    assert.equal(append(argv), "torito.accel=kvm torito.ip=10.0.0.2/24,10.0.1.2/24 torito.owner.net=1,0 --");
  });

  test("--rng attaches one device per core; --mem-weights goes to the kernel", () => {
    const argv = qemuArgs(options("--cpus", "3", "--rng", "--mem-weights", "1,2,1"));
    assert.equal(argv.filter((a) => a.startsWith("virtio-rng-device")).length, 3);
    assert.match(append(argv), /torito\.mem_weights=1,2,1/);
  });

  test("the boot seed: 32 private bytes per core, passed as a fw_cfg file (never on the command line)", () => {
    const dir = mkdtempSync(join(tmpdir(), "torito-seed-test-"));
    try {
      const file = writeBootSeed(dir, 3);
      const bytes = readFileSync(file);
      assert.equal(bytes.length, 3 * BOOT_SEED_BYTES);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.notDeepEqual(bytes, readFileSync(writeBootSeed(dir, 3))); // fresh each time
      const argv = qemuArgs({ ...options("--cpus", "3"), seedFile: file });
      assert.equal(argv[argv.indexOf("-fw_cfg") + 1], `name=opt/torito/seed,file=${file}`);
      assert.ok(!argv.some((a) => a.includes(bytes.toString("hex").slice(0, 16))));
      assert.equal(qemuArgs(options("--cpus", "3")).indexOf("-fw_cfg"), -1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("disks: :ro and @CORE; an explicit placement is passed as torito.owner.blk", () => {
    const o = options("--cpus", "2", "--disk", "a.img", "--disk", "b.img:ro@0");
    assert.deepEqual(o.disks, [{ path: "a.img", readOnly: false }, { path: "b.img", readOnly: true, core: 0 }]);
    assert.match(append(qemuArgs(o)), / torito\.owner\.blk=0,0 /);
    assert.doesNotMatch(append(qemuArgs(options("--cpus", "2", "--disk", "a.img"))), /owner/);
  });

  test("one core keeps the single-NIC command line (no owner option)", () => {
    assert.doesNotMatch(append(qemuArgs(options("--port", "8080:80"))), /owner/);
  });

  for (const [argv, message] of [
    [["--port", "8080:80@1"], /placed on core 1, but the VM has 1/],
    [["--cpus", "2", "--net", "tap:a", "--net", "tap:b@0"], /core 0 would get two network devices/],
    [["--port", "8080:80@x"], /a suffix @CORE names a core/],
    [["--port", "8080:80@99"], /at most 16 cores/],
    [["--cpus", "2", "--mem-weights", "1"], /expected 2 positive whole numbers/],
    [["--disk", "@1"], /bad --disk '@1'/],
    [["--disk", "a.img:ro@x"], /a suffix @CORE names a core/],
    [["--cpus", "2", "--mem-weights", "1,0"], /bad --mem-weights/],
    [["--net", "tap:a", "--ip", "10.0.0.2/24,bad"], /bad --ip 'bad'/],
  ] as const) {
    test(`refuses ${argv.join(" ")}`, () => {
      assert.throws(() => options(...argv), (e: unknown) => e instanceof UsageError && message.test(e.message));
    });
  }
});
