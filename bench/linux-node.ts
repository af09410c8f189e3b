/**
 * The baseline users would otherwise pick (issue 4): Node.js 20 serving the same files inside a
 * Linux microVM (Debian's kernel, an initramfs with busybox and node; bench/linux-node/guest.ts),
 * on the same QEMU machine type (`-M microvm`) and network backends, measured in the same run
 * beside the Torito appliance. Debian's kernel does not run under this machine's /dev/kvm (a
 * nested software hypervisor), so both sides run under TCG.
 *
 * Measured: launch → first HTTP 200 beside the VMM floor; wrk requests/s and latency for the
 * 612-byte file over user networking (hostfwd) and over a tap device in a network namespace;
 * MB/s of a 100 MiB download and upload; the smallest --mem that carries the wrk load.
 */
import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { qemuArgs, QEMU_BINARY, type RunOptions } from "../host/run.ts";
import { NetNamespace, tapUnavailableReason } from "../test/tools/netns.ts";
import { fmt, launch, median, runIfMain, table, type WrkResult } from "./lib.ts";
import { linuxNodeGuest, type LinuxNodeGuest } from "./linux-node/guest.ts";
import { benchImages, bootArgsToFirst200, curlRate, freePort, got200, spawnGuest, userNet, wrk, type Guest } from "./webserver.ts";

const BOOT_RUNS = 5;
const VARIANT_RUNS = 3;
const WRK_SECONDS = 10;
const PROBE_SECONDS = 3;
/** Granularity of the Linux guest's RAM bisection (each probe boots Linux under TCG: ~15 s). */
const LINUX_MEM_STEP = 4;
const BULK_BYTES = 100 << 20;
/** Guest RAM for the wrk runs and the boot timings (Linux: enough for the ~94 MB initramfs to unpack). */
const TORITO_MEM = 64 << 20;
const LINUX_MEM = 512 << 20;
/** Guest RAM for the 100 MiB transfers (Torito: the file is packed in the image; Linux: in the initramfs). */
const TORITO_BULK_MEM = 256 << 20;
const LINUX_BULK_MEM = 1024 << 20;
const GUEST = "10.77.0.2";
const HOST = "10.77.0.1";

/** The host's TSC rate in kHz: under TCG the guest's TSC is the host's. */
function hostTscKhz(): number {
  const mhz = /cpu MHz\s*:\s*([\d.]+)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1];
  if (!mhz) throw new Error("cannot read the CPU clock from /proc/cpuinfo");
  return Math.round(Number(mhz) * 1000);
}

type LinuxNet = { port: number } | { tap: string; ip: string; gateway: string };

interface LinuxBoot {
  /** boot the PVH vmlinux (the default) or the bzImage (the guest decompresses the kernel) */
  kernel?: "vmlinux" | "bzImage";
  /** print the kernel log on the console (default: `quiet`) */
  verbose?: boolean;
}

/**
 * QEMU arguments for the Linux + Node.js guest: the same microvm options as Torito's TCG runs
 * except `acpi=on` (Debian's kernel finds virtio-mmio devices only through ACPI: it lacks
 * CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES, so the `virtio_mmio.device=` list of acpi=off is ignored).
 */
export function linuxArgs(guest: LinuxNodeGuest, memBytes: number, net: LinuxNet, boot: LinuxBoot = {}): string[] {
  const khz = hostTscKhz();
  const ip = "port" in net ? { ip: "10.0.2.15/24", gateway: "10.0.2.2" } : { ip: net.ip, gateway: net.gateway };
  const netdev = "port" in net
    ? `user,id=net0,hostfwd=tcp:127.0.0.1:${net.port}-:80`
    : `tap,id=net0,ifname=${net.tap},script=no,downscript=no,vnet_hdr=on`;
  const cmdline = [
    "console=ttyS0", ...(boot.verbose ? [] : ["quiet"]),
    // Under TCG the kernel's TSC and delay-loop calibrations take seconds: give it the values.
    `tsc_early_khz=${khz}`, "tsc=reliable", `lpj=${Math.round((khz * 1000) / 250)}`, // CONFIG_HZ=250
    `nodeip=${ip.ip}`, `nodegw=${ip.gateway}`,
  ];
  return [
    "-M", "microvm,x-option-roms=off,rtc=on,acpi=on",
    "-accel", "tcg",
    "-m", `${memBytes >> 20}M`,
    "-smp", "1",
    "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
    "-serial", "stdio",
    "-netdev", netdev, "-device", "virtio-net-device,netdev=net0",
    "-kernel", boot.kernel === "bzImage" ? guest.kernel.bzImage : guest.kernel.vmlinux,
    "-initrd", guest.initrd,
    "-append", cmdline.join(" "),
  ];
}

/** Boots a guest inside the namespace and waits for its ": serving" console line. */
async function bootInNamespace(ns: NetNamespace, args: string[], timeoutMs = 120_000): Promise<Guest> {
  const guest = spawnGuest(QEMU_BINARY, args, (c, a) => ns.spawn(c, a));
  const deadline = Date.now() + timeoutMs;
  while (!guest.console().includes(": serving")) {
    if (Date.now() > deadline || guest.child.exitCode !== null) {
      await guest.stop();
      throw new Error(`guest did not start: ${guest.console().slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return guest;
}

/** Whether a guest started with `argsFor(port)` serves the wrk load without errors and still answers afterwards. */
async function servesLoad(argsFor: (port: number) => string[], bootTimeoutMs: number): Promise<boolean> {
  const port = await freePort();
  let guest: Guest | undefined;
  try {
    guest = (await bootArgsToFirst200(argsFor(port), port, "/612.html", bootTimeoutMs)).guest;
    // A warm-up run first, and a 10 s response timeout instead of wrk's 2 s: under TCG on a
    // busy host, Node.js's responses sometimes take over 2 s even with ample RAM (JIT
    // compilation, a shared core), and this probe is about memory, not latency.
    await wrk(`http://127.0.0.1:${port}/612.html`, PROBE_SECONDS, undefined, ["--timeout", "10s"]);
    const r = await wrk(`http://127.0.0.1:${port}/612.html`, PROBE_SECONDS, undefined, ["--timeout", "10s"]);
    const alive = await got200(port, "/612.html", 5000);
    const ok = r.errors === 0 && r.requests > 0 && alive && guest.child.exitCode === null;
    if (!ok) console.log(`linux-node probe failed: ${r.requests} requests, ${r.errors} errors, alive ${alive}, ${guest.console().slice(-300)}`);
    return ok;
  } catch (e) {
    console.log(`linux-node probe failed: ${(e as Error).message.slice(0, 300)}`);
    return false;
  } finally {
    await guest?.stop();
  }
}

/** Smallest multiple of `step` MiB in (lo, hi] that serves the load (binary search; `hi` must serve). */
async function smallestMem(argsFor: (mib: number, port: number) => string[], lo: number, hi: number, step: number, bootTimeoutMs: number): Promise<number> {
  const probe = (mib: number) => servesLoad((port) => argsFor(mib, port), bootTimeoutMs);
  if (!(await probe(hi))) return NaN;
  while (hi - lo > step) {
    const mid = lo + Math.floor((hi - lo) / step / 2) * step;
    const ok = await probe(mid);
    console.log(`linux-node min mem: ${mid} MiB ${ok ? "serves" : "fails"}`);
    if (ok) hi = mid;
    else lo = mid;
  }
  return hi;
}

const mibOrFailure = (mib: number, hi: number) => (Number.isFinite(mib) ? `${mib} MiB` : `not measured: the probe failed at ${hi} MiB already`);

/** Runs the benchmark; returns its BENCHMARKS.md section. */
export async function linuxNodeBenchmark(work: string): Promise<string> {
  const { small, bulkSite, appliance, bulkAppliance, sink, floor } = await benchImages(work);
  const bulkFile = join(bulkSite, "big.bin");
  const linux = linuxNodeGuest({ name: "small", site: small });
  const linuxGzip = linuxNodeGuest({ name: "small-gzip", site: small, gzip: true });
  const linuxBulk = linuxNodeGuest({ name: "100m", site: bulkSite });
  const tapSkip = tapUnavailableReason();
  const torito = (image: string, port: number, memBytes = TORITO_MEM): string[] => qemuArgs(userNet(image, "tcg", port, memBytes));
  const out: string[] = ["## Linux + Node.js microVM baseline (issue 4)", ""];

  // (a) launch → first HTTP 200, interleaved: floor, Torito, Linux + Node.
  const floorMs: number[] = [], toritoMs: number[] = [], toritoServing: number[] = [], linuxMs: number[] = [], linuxServing: number[] = [];
  for (let i = 0; i < BOOT_RUNS; i++) {
    const port = await freePort();
    floorMs.push((await launch(userNet(floor, "tcg", port), "hi")).markerMs);
    let r = await bootArgsToFirst200(torito(appliance, port), port, "/612.html");
    await r.guest.stop();
    toritoMs.push(r.ms);
    toritoServing.push(r.servingMs);
    r = await bootArgsToFirst200(linuxArgs(linux, LINUX_MEM, { port }), port, "/612.html", 180_000);
    await r.guest.stop();
    linuxMs.push(r.ms);
    linuxServing.push(r.servingMs);
    console.log(`linux-node first 200 run ${i + 1}: floor ${fmt(floorMs[i]!)} ms, Torito ${fmt(toritoMs[i]!)} ms, Linux + Node ${fmt(linuxMs[i]!)} ms`);
  }
  const f = median(floorMs), t = median(toritoMs), l = median(linuxMs);
  const bootRows = [
    ["VMM floor (PVH image printing \"hi\")", fmt(f), "", "", ""],
    ["Torito appliance", fmt(median(toritoServing)), fmt(t), fmt(t - f), ""],
    ["Linux + Node.js", fmt(median(linuxServing)), fmt(l), fmt(l - f), ""],
  ];
  bootRows[1]![4] = `${(t / l * 100).toFixed(2)} % of Linux + Node (1/${(l / t).toFixed(0)})`;
  console.log(`linux-node first 200: floor ${fmt(f)} ms, Torito ${fmt(t)} ms, Linux + Node ${fmt(l)} ms`);

  // Boot variants of the Linux guest (kernel image format, initramfs compression, console).
  const variants: Array<[string, LinuxNodeGuest, LinuxBoot]> = [
    ["PVH vmlinux, uncompressed initramfs, quiet (used above)", linux, {}],
    ["PVH vmlinux, gzip initramfs, quiet", linuxGzip, {}],
    ["bzImage (xz, decompressed by the guest), uncompressed initramfs, quiet", linux, { kernel: "bzImage" }],
    ["PVH vmlinux, uncompressed initramfs, kernel log on the serial console", linux, { verbose: true }],
  ];
  const variantTimes = variants.map(() => [] as number[]);
  for (let i = 0; i < VARIANT_RUNS; i++) {
    for (const [k, [, guest, boot]] of variants.entries()) {
      const port = await freePort();
      const r = await bootArgsToFirst200(linuxArgs(guest, LINUX_MEM, { port }, boot), port, "/612.html", 180_000);
      await r.guest.stop();
      variantTimes[k]!.push(r.ms);
    }
  }
  const variantRows = variants.map(([what, guest], k) => [what, `${(guest.initrdBytes / 1e6).toFixed(1)} MB`, fmt(median(variantTimes[k]!))]);
  console.log(`linux-node variants: ${JSON.stringify(variantRows)}`);

  // (b) wrk over user networking and over tap.
  const wrkRows: (string | number)[][] = [];
  const wrkRow = (what: string, r: WrkResult) => {
    wrkRows.push([what, Math.round(r.rps), r.p50, r.p99, r.errors]);
    console.log(`linux-node wrk ${what}: ${Math.round(r.rps)} req/s, p50 ${r.p50}, p99 ${r.p99}, errors ${r.errors}`);
  };
  const userWrk = async (what: string, args: (port: number) => string[]) => {
    const port = await freePort();
    const { guest } = await bootArgsToFirst200(args(port), port, "/612.html", 180_000);
    try {
      wrkRow(what, await wrk(`http://127.0.0.1:${port}/612.html`, WRK_SECONDS));
    } finally {
      await guest.stop();
    }
  };
  await userWrk("Torito appliance, tcg, user networking (hostfwd)", (port) => torito(appliance, port));
  await userWrk("Linux + Node.js, tcg, user networking (hostfwd)", (port) => linuxArgs(linux, LINUX_MEM, { port }));

  // (c) 100 MiB down and up over user networking.
  const bulkRows: (string | number)[][] = [];
  const userBulk = async (what: string, downArgs: (port: number) => string[], upArgs: (port: number) => string[], upPath: string) => {
    let port = await freePort();
    let guest = (await bootArgsToFirst200(downArgs(port), port, "/612.html", 180_000)).guest;
    let down: number, up: number;
    try {
      down = await curlRate(`http://127.0.0.1:${port}/big.bin`);
    } finally {
      await guest.stop();
    }
    port = await freePort();
    guest = spawnGuest(QEMU_BINARY, upArgs(port));
    try {
      const deadline = Date.now() + 180_000;
      while (!guest.console().includes(": serving")) {
        if (Date.now() > deadline || guest.child.exitCode !== null) throw new Error(`upload server did not start: ${guest.console().slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      up = await curlRate(`http://127.0.0.1:${port}${upPath}`, bulkFile);
    } finally {
      await guest.stop();
    }
    bulkRows.push([what, down.toFixed(2), up.toFixed(2)]);
    console.log(`linux-node bulk ${what}: down ${down.toFixed(2)} MB/s, up ${up.toFixed(2)} MB/s`);
  };
  await userBulk("Torito, tcg, user networking", (port) => torito(bulkAppliance, port, TORITO_BULK_MEM), (port) => torito(sink, port), "/count");
  await userBulk("Linux + Node.js, tcg, user networking", (port) => linuxArgs(linuxBulk, LINUX_BULK_MEM, { port }), (port) => linuxArgs(linux, LINUX_MEM, { port }), "/count");

  // (b, c) over tap, in a network namespace.
  if (tapSkip === null) {
    const ns = await NetNamespace.create("linux-node");
    try {
      await ns.addTap("tap0", `${HOST}/24`);
      const toritoTap = (image: string, memBytes = TORITO_MEM): string[] => qemuArgs({
        image, accel: "tcg", memBytes, cpus: 1, ports: [], appArgs: [], taps: [{ ifname: "tap0", vnetHdr: true }], ip: `${GUEST}/24`, gateway: HOST,
      } satisfies RunOptions);
      const linuxTap = (guest: LinuxNodeGuest, memBytes: number) => linuxArgs(guest, memBytes, { tap: "tap0", ip: `${GUEST}/24`, gateway: HOST });
      const tapWrk = async (what: string, args: string[]) => {
        const guest = await bootInNamespace(ns, args);
        try {
          // The first request after boot may wait for ARP: one warm-up GET, then wrk.
          await ns.run("curl", ["-s", "-o", "/dev/null", "--max-time", "30", `http://${GUEST}/612.html`], 40_000);
          wrkRow(what, await wrk(`http://${GUEST}/612.html`, WRK_SECONDS, ns));
        } finally {
          await guest.stop();
        }
      };
      await tapWrk("Torito appliance, tcg, tap", toritoTap(appliance));
      await tapWrk("Linux + Node.js, tcg, tap", linuxTap(linux, LINUX_MEM));
      const tapBulk = async (what: string, downArgs: string[], upArgs: string[], upPath: string) => {
        let guest = await bootInNamespace(ns, downArgs);
        let down: number, up: number;
        try {
          down = await curlRate(`http://${GUEST}/big.bin`, undefined, ns);
        } finally {
          await guest.stop();
        }
        guest = await bootInNamespace(ns, upArgs);
        try {
          up = await curlRate(`http://${GUEST}${upPath}`, bulkFile, ns);
        } finally {
          await guest.stop();
        }
        bulkRows.push([what, down.toFixed(2), up.toFixed(2)]);
        console.log(`linux-node bulk ${what}: down ${down.toFixed(2)} MB/s, up ${up.toFixed(2)} MB/s`);
      };
      await tapBulk("Torito, tcg, tap", toritoTap(bulkAppliance, TORITO_BULK_MEM), toritoTap(sink), "/count");
      await tapBulk("Linux + Node.js, tcg, tap", linuxTap(linuxBulk, LINUX_BULK_MEM), linuxTap(linux, LINUX_MEM), "/count");
    } finally {
      await ns.delete();
    }
  }

  // (d) smallest --mem that carries the wrk load (user networking).
  const toritoMin = await smallestMem((mib, port) => torito(appliance, port, mib << 20), 2, 64, 1, 30_000);
  console.log(`linux-node min mem Torito tcg: ${toritoMin} MiB`);
  const linuxMin = await smallestMem((mib, port) => linuxArgs(linux, mib << 20, { port }), 64, 512, LINUX_MEM_STEP, 180_000);
  console.log(`linux-node min mem Linux + Node tcg: ${linuxMin} MiB`);

  const rps = (what: string) => Number(wrkRows.find((r) => r[0] === what)?.[1] ?? NaN);
  const ratioUser = rps("Torito appliance, tcg, user networking (hostfwd)") / rps("Linux + Node.js, tcg, user networking (hostfwd)");
  const ratioTap = rps("Torito appliance, tcg, tap") / rps("Linux + Node.js, tcg, tap");

  out.push(
    `Command: \`npm run bench -- linux-node\`. Both guests under TCG (\`-accel tcg\`), 1 vCPU, on QEMU \`-M microvm\` with`,
    "the same network backends, all measured in this run. Debian's kernel does not run usefully under this machine's",
    `\`/dev/kvm\` (a nested software hypervisor), hence TCG for both sides. The host has ${cpus().length} cores shared with other`,
    "users' QEMU guests and builds, and under TCG a guest needs a whole host core: absolute figures vary by 2–3× between",
    "runs; compare the rows of one run.",
    "",
    `*Linux + Node.js*: Debian's \`${linux.kernel.packageName}\` (the dependency of \`linux-image-amd64\`) booted as its PVH`,
    "`vmlinux` (unpacked on the host from the bzImage), an initramfs (cpio newc, uncompressed, " +
      `${(linux.initrdBytes / 1e6).toFixed(1)} MB) holding busybox-static as \`/init\`'s shell`,
    `(\`bench/linux-node/init.sh\`: mounts, \`insmod\` of ${linux.modules.join(", ")}, static IP), and the`,
    `host's Node.js ${linux.node} (stripped, with the shared libraries \`ldd\` lists) running \`bench/linux-node/server.js\`:`,
    "`node:http` serving `/srv` (files up to 1 MiB read once and kept in memory, larger ones streamed with",
    "`fs.createReadStream`; a POST is read to the end and its byte count returned). Kernel command line:",
    "`console=ttyS0 quiet tsc_early_khz=<host TSC kHz> tsc=reliable lpj=<TSC kHz × 4>` plus the address; microvm",
    "with `acpi=on` (Debian's kernel finds virtio-mmio devices only through ACPI: it is built without",
    "`CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES`, so `acpi=off`'s `virtio_mmio.device=` list is ignored and the guest has no",
    `network). Guest RAM ${LINUX_MEM >> 20} MiB (${LINUX_BULK_MEM >> 20} MiB with the 100 MiB file in the initramfs).`,
    `*Torito*: the appliance (\`torito serve\`'s image) with ${TORITO_MEM >> 20} MiB (${TORITO_BULK_MEM >> 20} MiB with the 100 MiB file packed in),`,
    "and `test/fixtures/apps/upload-sink.ts` for uploads, as in the WebServer section.",
    "",
    `**Launch → first HTTP 200** (medians of ${BOOT_RUNS} interleaved runs, user networking with a host port forward;`,
    "timed from spawning QEMU; polling with a new connection every ≤ 25 ms starts at the guest's \": serving\"",
    "console line, as in the WebServer section; *console line*: \"hi\" for the floor, \": serving\" for the guests).",
    "Target: Torito ≤ 1/20 of Linux + Node.js — " +
      (t <= l / 20 ? "**met**." : "**not met**."),
    "",
    table(["guest", "console line (ms)", "first 200 (ms)", "over floor (ms)", "Torito / Linux"], bootRows),
    "",
    `Linux guest boot variants (first 200, medians of ${VARIANT_RUNS} interleaved runs, same network):`,
    "",
    table(["kernel image, initramfs, console", "initramfs", "first 200 (ms)"], variantRows),
    "",
    `**wrk** \`-t1 -c30 -d${WRK_SECONDS}s --latency\` (keep-alive), 612-byte HTML file. Tap: a tap device in a network`,
    "namespace (vnet_hdr on), wrk inside the namespace; one warm-up GET first. Target: Torito ≥ 3× Linux + Node.js",
    `requests/s — user networking ${ratioUser.toFixed(2)}× (${ratioUser >= 3 ? "**met**" : "**not met**"})` +
      (tapSkip ? `; tap not measured (${tapSkip}).` : `, tap ${ratioTap.toFixed(2)}× (${ratioTap >= 3 ? "**met**" : "**not met**"}).`),
    "",
    table(["server", "requests/s", "p50", "p99", "errors"], wrkRows),
    "",
    "*Errors* are wrk's socket errors (timeouts: no answer within 2 s). Over user networking they come from",
    "opening wrk's 30 connections at once: QEMU's user network accepts them on a host socket with a backlog of 1,",
    "and under TCG its main loop seldom runs. A pcap at the Torito guest's netdev showed the connections' SYNs",
    "arriving over 4.4 s (at 0.01-0.06 s, then 1.08, 1.28, 1.49, 1.91, 2.74 and 4.40 s), while every request the",
    "guest received was answered within 27 ms. Both guests see them, and so does the p99.",
    "",
    `**Bulk transfers**: one curl GET of a ${BULK_BYTES >> 20} MiB file served from guest RAM (packed into the image /`,
    "in the initramfs), and one curl POST of the same bytes (counted and discarded by the guest). MB/s = 10^6 bytes",
    "per second of curl's total time.",
    "",
    table(["server", "download (MB/s)", "upload (MB/s)"], bulkRows),
    "",
    `**Smallest \`--mem\`** (\`-m\`; binary search, whole MiB for Torito, steps of ${LINUX_MEM_STEP} MiB for Linux) at which the guest boots`,
    `and, after a ${PROBE_SECONDS} s warm-up run of wrk, serves \`wrk -t1 -c30 -d${PROBE_SECONDS}s --timeout 10s\` on the 612-byte file with no socket errors and`,
    "no non-2xx responses, and still answers afterwards (user networking).",
    "",
    table(["guest", "min guest RAM"], [["Torito appliance, tcg", mibOrFailure(toritoMin, 64)], ["Linux + Node.js, tcg", mibOrFailure(linuxMin, 512)]]),
    "",
  );
  return out.join("\n");
}

// `node --import tsx bench/linux-node.ts` runs this section alone and prints it.
await runIfMain(import.meta, linuxNodeBenchmark);
