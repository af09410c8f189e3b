/**
 * Builds the Linux + Node.js baseline guest for the benchmarks (bench/linux-node.ts): Debian's
 * `linux-image-amd64` kernel and an initramfs holding busybox (static) as /init's shell, the
 * virtio modules, the host's Node.js 20 with the shared libraries it loads, server.js and the
 * files to serve. Everything downloaded or extracted lives under build/linux-node/ (never in the
 * repository) and is reused while its inputs are unchanged.
 *
 * Debian's packages are fetched with `apt-get download` (the dependency of the
 * `linux-image-amd64` metapackage is resolved with `apt-cache depends`) and unpacked with
 * `dpkg-deb -x`; the initramfs is written here as a cpio "newc" archive, so no cpio tool is
 * needed. The kernel is booted as its PVH `vmlinux` (the xz payload of the bzImage, unpacked on
 * the host) or as the bzImage itself, see `LinuxNodeGuest`.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, realpathSync, renameSync,
  rmSync, statSync, writeFileSync, writeSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { gzipSync } from "node:zlib";

const here = import.meta.dirname;
const repo = join(here, "../..");
const cacheRoot = join(repo, "build/linux-node");

/** Modules the guest needs for its network (their dependencies are added from the .ko files). */
const WANTED_MODULES = ["virtio_mmio", "virtio_net"];

export interface LinuxKernel {
  /** Debian package name, e.g. linux-image-6.1.0-56-amd64 */
  packageName: string;
  /** uname -r */
  release: string;
  /** the bzImage as shipped (xz-compressed kernel, decompressed by the guest) */
  bzImage: string;
  /** the kernel ELF with its PVH entry note, decompressed on the host */
  vmlinux: string;
  /** directory of the unpacked package (lib/modules/RELEASE/...) */
  root: string;
}

export interface LinuxNodeGuest {
  kernel: LinuxKernel;
  /** the initramfs (cpio newc, optionally gzip-compressed) */
  initrd: string;
  /** bytes of the initramfs file */
  initrdBytes: number;
  /** modules in load order (names) */
  modules: string[];
  /** the busybox version string */
  busybox: string;
  /** the Node.js version in the guest */
  node: string;
}

function run(command: string, args: string[], cwd?: string): string {
  return execFileSync(command, args, { encoding: "utf8", cwd, stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20 });
}

let aptUpdated = false;
/** `apt-get download` of `packages` into `dir` (an `apt-get update` first if apt does not know them). */
function aptDownload(packages: string[], dir: string): void {
  mkdirSync(dir, { recursive: true });
  const attempt = () => spawnSync("apt-get", ["download", "-qq", ...packages], { cwd: dir, encoding: "utf8" });
  let r = attempt();
  if (r.status !== 0 && !aptUpdated) {
    aptUpdated = true;
    spawnSync("apt-get", ["update", "-qq"], { stdio: "ignore" });
    r = attempt();
  }
  if (r.status !== 0) throw new Error(`apt-get download ${packages.join(" ")} failed: ${r.stderr}`);
}

/** The versioned kernel package `linux-image-amd64` depends on. */
function kernelPackageName(): string {
  const query = () => spawnSync("apt-cache", ["depends", "linux-image-amd64"], { encoding: "utf8" }).stdout ?? "";
  let out = query();
  if (!/Depends: linux-image-\S+-amd64/.test(out) && !aptUpdated) {
    aptUpdated = true;
    spawnSync("apt-get", ["update", "-qq"], { stdio: "ignore" });
    out = query();
  }
  const m = /Depends: (linux-image-[\d.]+-\d+-amd64)\b/.exec(out);
  if (!m) throw new Error(`cannot resolve linux-image-amd64 with apt-cache depends: ${out}`);
  return m[1]!;
}

/** Downloads and unpacks a package once; returns the directory it was unpacked into. */
function unpackedPackage(name: string): string {
  const root = join(cacheRoot, "pkg", name);
  if (existsSync(join(root, ".unpacked"))) return root;
  const dl = join(cacheRoot, "dl");
  rmSync(dl, { recursive: true, force: true });
  aptDownload([name], dl);
  const deb = readdirSync(dl).find((f) => f.endsWith(".deb"));
  if (!deb) throw new Error(`apt-get download ${name}: no .deb`);
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  run("dpkg-deb", ["-x", join(dl, deb), root]);
  writeFileSync(join(root, ".unpacked"), deb + "\n");
  rmSync(dl, { recursive: true, force: true });
  return root;
}

/** Debian's current amd64 kernel, downloaded and unpacked once, with its vmlinux extracted. */
export function debianKernel(): LinuxKernel {
  const packageName = kernelPackageName();
  const root = unpackedPackage(packageName);
  const release = readdirSync(join(root, "lib/modules"))[0]!;
  const bzImage = join(root, "boot", `vmlinuz-${release}`);
  const vmlinux = join(cacheRoot, `vmlinux-${release}`);
  if (!existsSync(vmlinux)) {
    // The bzImage carries the kernel ELF as an xz stream (CONFIG_KERNEL_XZ): find its magic.
    const image = readFileSync(bzImage);
    const at = image.indexOf(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]));
    if (at < 0) throw new Error(`${bzImage}: no xz payload found`);
    const r = spawnSync("xz", ["-dc", "--single-stream"], { input: image.subarray(at), maxBuffer: 512 << 20 });
    if (!r.stdout || r.stdout.length < 4 || r.stdout.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${bzImage}: xz payload is not an ELF (${r.stderr})`);
    writeFileSync(vmlinux + ".tmp", r.stdout);
    renameSync(vmlinux + ".tmp", vmlinux);
  }
  return { packageName, release, bzImage, vmlinux, root };
}

/** The `depends=` entry of a module's .modinfo section. */
function moduleDepends(ko: string): string[] {
  const data = readFileSync(ko);
  const key = Buffer.from("\0depends=");
  const at = data.indexOf(key);
  if (at < 0) return [];
  const end = data.indexOf(0, at + key.length);
  const value = data.toString("latin1", at + key.length, end);
  return value ? value.split(",") : [];
}

/** `wanted` modules and their dependencies, dependencies first: [name, path of the .ko]. */
export function resolveModules(kernel: LinuxKernel, wanted: readonly string[]): Array<[string, string]> {
  const byName = new Map<string, string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".ko")) byName.set(entry.name.slice(0, -3).replace(/-/g, "_"), path);
    }
  };
  walk(join(kernel.root, "lib/modules", kernel.release, "kernel"));
  const builtin = new Set(readFileSync(join(kernel.root, "lib/modules", kernel.release, "modules.builtin"), "utf8")
    .split("\n").map((line) => line.replace(/^.*\//, "").replace(/\.ko$/, "").replace(/-/g, "_")));
  const order: Array<[string, string]> = [];
  const seen = new Set<string>();
  const visit = (name: string) => {
    const key = name.replace(/-/g, "_");
    if (seen.has(key) || builtin.has(key)) return;
    seen.add(key);
    const ko = byName.get(key);
    if (!ko) throw new Error(`module ${name} not found in ${kernel.packageName}`);
    for (const dep of moduleDepends(ko)) visit(dep);
    order.push([key, ko]);
  };
  for (const name of wanted) visit(name);
  return order;
}

/** A cpio "newc" archive writer (the format the kernel unpacks into its initial rootfs). */
class CpioWriter {
  private readonly fd: number;
  private offset = 0;
  private ino = 1;
  private readonly dirs = new Set<string>();

  constructor(path: string) {
    this.fd = openSync(path, "w");
  }

  private write(data: Buffer): void {
    writeSync(this.fd, data);
    this.offset += data.length;
  }

  private pad(): void {
    const n = (4 - (this.offset % 4)) % 4;
    if (n) this.write(Buffer.alloc(n));
  }

  private header(name: string, mode: number, size: number, rdevMajor = 0, rdevMinor = 0): void {
    const hex = (n: number) => n.toString(16).padStart(8, "0");
    const nameBytes = Buffer.from(name + "\0");
    const fields = [this.ino++, mode, 0, 0, 1, 0, size, 0, 0, rdevMajor, rdevMinor, nameBytes.length, 0];
    this.write(Buffer.from("070701" + fields.map(hex).join(""), "latin1"));
    this.write(nameBytes);
    this.pad();
  }

  /** A directory and its parents (once each). */
  dir(path: string): void {
    if (path === "" || path === "." || this.dirs.has(path)) return;
    this.dir(dirname(path) === "." ? "" : dirname(path));
    this.dirs.add(path);
    this.header(path, 0o040755, 0);
  }

  file(path: string, data: Buffer, mode = 0o644): void {
    this.dir(dirname(path));
    this.header(path, 0o100000 | mode, data.length);
    this.write(data);
    this.pad();
  }

  /** A regular file copied from the host in chunks (the node binary, a 100 MiB file). */
  hostFile(path: string, source: string, mode = 0o644): void {
    const size = statSync(source).size;
    this.dir(dirname(path));
    this.header(path, 0o100000 | mode, size);
    const input = openSync(source, "r");
    try {
      const chunk = Buffer.alloc(4 << 20);
      for (let done = 0; done < size; ) {
        const n = readSync(input, chunk, 0, Math.min(chunk.length, size - done), done);
        if (n <= 0) throw new Error(`${source}: short read`);
        this.write(chunk.subarray(0, n));
        done += n;
      }
    } finally {
      closeSync(input);
    }
    this.pad();
  }

  symlink(path: string, target: string): void {
    this.dir(dirname(path));
    const data = Buffer.from(target);
    this.header(path, 0o120777, data.length);
    this.write(data);
    this.pad();
  }

  charDevice(path: string, major: number, minor: number): void {
    this.dir(dirname(path));
    this.header(path, 0o020600, 0, major, minor);
  }

  close(): void {
    this.header("TRAILER!!!", 0, 0);
    closeSync(this.fd);
  }
}

/** The shared libraries `binary` loads, as ldd resolves them on this host: [path in the guest, real file]. */
function sharedLibraries(binary: string): Array<[string, string]> {
  const libs: Array<[string, string]> = [];
  for (const line of run("ldd", [binary]).split("\n")) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push([m[1]!.replace(/^\//, ""), realpathSync(m[1]!)]);
  }
  return libs;
}

/** The host's node, stripped once into the cache (the Debian-style binary carries debug info). */
function strippedNode(): { path: string; version: string } {
  const node = realpathSync(process.execPath);
  const version = process.version;
  const out = join(cacheRoot, `node-${version}-stripped`);
  if (!existsSync(out)) {
    run("strip", ["-o", out + ".tmp", node]);
    renameSync(out + ".tmp", out);
  }
  return { path: out, version };
}

export interface InitrdOptions {
  /** name of the cached initramfs, e.g. "small" or "100m" */
  name: string;
  /** files to serve from /srv: every regular file of this directory */
  site: string;
  /** gzip the archive (the kernel decompresses it at boot) */
  gzip?: boolean;
}

/** Builds (or reuses) the guest: kernel plus initramfs for `options`. */
export function linuxNodeGuest(options: InitrdOptions): LinuxNodeGuest {
  const kernel = debianKernel();
  const busyboxRoot = unpackedPackage("busybox-static");
  const busybox = join(busyboxRoot, "bin/busybox");
  const busyboxVersion = /BusyBox v\S+/.exec(spawnSync(busybox, [], { encoding: "utf8" }).stdout ?? "")?.[0] ?? "BusyBox";
  const node = strippedNode();
  const modules = resolveModules(kernel, WANTED_MODULES);
  const libs = sharedLibraries(process.execPath);
  const siteFiles = readdirSync(options.site).filter((f) => statSync(join(options.site, f)).isFile()).sort();

  const key = createHash("sha256");
  for (const f of [join(here, "init.sh"), join(here, "server.js"), join(here, "guest.ts")]) key.update(readFileSync(f));
  for (const f of [kernel.packageName, node.version, busyboxVersion, ...libs.map((l) => l[1]), String(options.gzip ?? false)]) key.update(f + "\0");
  for (const f of siteFiles) {
    const st = statSync(join(options.site, f));
    key.update(`${f}\0${st.size}\0${st.mtimeMs}\0`);
  }
  const digest = key.digest("hex").slice(0, 16);
  const initrd = join(cacheRoot, `initrd-${options.name}-${digest}.cpio${options.gzip ? ".gz" : ""}`);
  if (!existsSync(initrd)) {
    for (const old of readdirSync(cacheRoot)) {
      if (old.startsWith(`initrd-${options.name}-`)) rmSync(join(cacheRoot, old), { force: true });
    }
    const raw = initrd.replace(/\.gz$/, "") + ".tmp";
    const cpio = new CpioWriter(raw);
    for (const d of ["proc", "sys", "dev", "tmp", "srv"]) cpio.dir(d);
    cpio.charDevice("dev/console", 5, 1);
    cpio.charDevice("dev/null", 1, 3);
    cpio.hostFile("bin/busybox", busybox, 0o755);
    for (const applet of ["sh", "mount", "insmod", "ip", "usleep", "cat", "echo"]) cpio.symlink(`bin/${applet}`, "busybox");
    cpio.file("init", readFileSync(join(here, "init.sh")), 0o755);
    for (const [name, ko] of modules) cpio.hostFile(`lib/modules/${name}.ko`, ko);
    cpio.file("lib/modules/load-order", Buffer.from(modules.map(([name]) => name).join("\n") + "\n"));
    for (const [path, real] of libs) cpio.hostFile(path, real, 0o755);
    cpio.hostFile("bin/node", node.path, 0o755);
    cpio.file("server.js", readFileSync(join(here, "server.js")));
    for (const f of siteFiles) cpio.hostFile(`srv/${f}`, join(options.site, f));
    cpio.close();
    if (options.gzip) {
      writeFileSync(initrd + ".tmp", gzipSync(readFileSync(raw), { level: 6 }));
      rmSync(raw);
      renameSync(initrd + ".tmp", initrd);
    } else {
      renameSync(raw, initrd);
    }
  }
  return {
    kernel,
    initrd,
    initrdBytes: statSync(initrd).size,
    modules: modules.map(([name]) => name),
    busybox: busyboxVersion,
    node: node.version,
  };
}

// `node --import tsx bench/linux-node/guest.ts [SITE]` builds the guest and prints what it holds.
if (process.argv[1] === import.meta.filename) {
  const site = process.argv.slice(2).find((a) => !a.startsWith("--")) ?? join(repo, "build/net-sites/bench-small");
  const guest = linuxNodeGuest({ name: "manual", site, gzip: process.argv.includes("--gzip") });
  console.log(JSON.stringify(guest, null, 2));
}
