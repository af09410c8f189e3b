/**
 * WebServer appliance benchmark (issue 4): time from launching QEMU to the first HTTP 200 beside
 * the VMM floor; wrk requests/s and latency for a 612-byte file beside Node.js on the host serving
 * the same file; MB/s for large downloads and uploads; the smallest --mem that carries the wrk
 * load. Every baseline is measured in the same run. Tap figures need root (a network namespace
 * the benchmark creates and deletes); they are left out otherwise.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { copyFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { buildImage } from "../host/build.ts";
import { applianceImage } from "../host/serve.ts";
import { kvmUsable, qemuArgs, QEMU_BINARY, type Accel, type RunOptions } from "../host/run.ts";
import { pvhTestImage } from "../test/fixtures/pvh-test-image.ts";
import { NetNamespace, runCommand, tapUnavailableReason, testSite } from "../test/tools/netns.ts";
import { benchSeed, fmt, launch, median, parseWrk, runIfMain, table, type WrkResult } from "./lib.ts";
import { freePort } from "../test/helpers/ports.ts";

/** Launch → first 200 pairs (a floor run, then the appliance) per accelerator. Under KVM a
 *  pair's difference is ~15 ms between two ~70 ms QEMU launches, and on the shared host one
 *  run's pairs ranged from −29 to +33 ms: 41 pairs tighten the median. Under TCG the
 *  difference is ~170 ms, and 21 pairs are plenty. */
const BOOT_RUNS: Record<Accel, number> = { kvm: 41, tcg: 21 };
const WRK_SECONDS = 4;
const WRK_ROUNDS = 5;
const PROBE_SECONDS = 3;
const BULK_BYTES = 100 << 20;
const BULK_MEM = 256 << 20;
const GUEST = "10.77.0.2";
const repo = join(import.meta.dirname, "..");

export { freePort };

/** The appliance's QEMU options as `torito serve` sets them: user networking and the fw_cfg boot seed. */
export const userNet = (image: string, accel: Accel, port: number, memBytes = 64 << 20): RunOptions =>
  ({ image, accel, memBytes, cpus: 1, ports: [{ address: "127.0.0.1", hostPort: port, guestPort: 80 }], appArgs: [], seedFile: benchSeed() });

/** One GET on a fresh connection; resolves true on a 200 status line within `ms`. */
export function got200(port: number, path: string, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    let data = "";
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), ms);
    socket.on("connect", () => socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    socket.on("data", (d: Buffer) => {
      data += d.toString("latin1");
      if (data.includes("\r\n")) done(data.startsWith("HTTP/1.1 200 "));
    });
    socket.on("error", () => done(false));
    socket.on("close", () => done(false));
  });
}

export interface Guest {
  child: ChildProcess;
  console: () => string;
  stop: () => Promise<void>;
}

export function spawnGuest(command: string, args: string[], spawner?: (c: string, a: string[]) => ChildProcess): Guest {
  const child = spawner ? spawner(command, args) : spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (out += d));
  return {
    child,
    console: () => out,
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once("exit", () => resolve());
      child.kill("SIGKILL");
    }),
  };
}

/** Boots a guest on user networking and measures launch → first HTTP 200 with a tight connect loop. */
export function bootToFirst200(o: RunOptions, port: number, path: string, timeoutMs = 60_000): Promise<{ ms: number; servingMs: number; guest: Guest }> {
  return bootArgsToFirst200(qemuArgs(o), port, path, timeoutMs);
}

/**
 * Launches QEMU with `args` (a guest on user networking forwarding host `port`) and measures
 * launch → first HTTP 200; the guest announces that it listens with a console line containing
 * ": serving" (the Torito appliance and the Linux + Node.js guest alike).
 */
export async function bootArgsToFirst200(args: string[], port: number, path: string, timeoutMs = 60_000): Promise<{ ms: number; servingMs: number; guest: Guest }> {
  const start = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - start) / 1e6;
  const guest = spawnGuest(QEMU_BINARY, args);
  let servingMs = NaN;
  const deadline = Date.now() + timeoutMs;
  // Connections made before the guest listens only wait in QEMU's user network (its host
  // socket has a backlog of 1) and are abandoned after 25 ms each: wait for the console line
  // first (its chunk's event, no polling delay), then connect in a tight loop.
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      guest.child.stdout!.off("data", onData);
      resolve();
    };
    const onData = () => {
      if (guest.console().includes(": serving")) {
        servingMs = elapsed();
        done();
      }
    };
    guest.child.stdout!.on("data", onData);
    guest.child.once("exit", done);
  });
  for (;;) {
    if (await got200(port, path, 25)) return { ms: elapsed(), servingMs, guest };
    if (Date.now() > deadline || guest.child.exitCode !== null) {
      await guest.stop();
      throw new Error(`no HTTP 200 from the guest: ${guest.console()}`);
    }
  }
}

/** wrk `-t1 -c30 --latency` against `url` (inside `ns` when given). */
export async function wrk(url: string, seconds: number, ns?: NetNamespace, extra: readonly string[] = []): Promise<WrkResult> {
  const args = ["-t1", "-c30", `-d${seconds}s`, "--latency", ...extra, url];
  const r = ns ? await ns.run("wrk", args, (seconds + 30) * 1000) : await runCommand("wrk", args, (seconds + 30) * 1000);
  const out = r.stdout.toString();
  if (r.code !== 0) throw new Error(`wrk failed: ${r.stderr}${out}`);
  return parseWrk(out);
}

/** Node.js 20 on the host (no VM) serving `dir`'s files from memory with node:http. */
async function startNodeServer(dir: string, port: number): Promise<ChildProcess> {
  const script = `
    const http = require("node:http"), fs = require("node:fs"), path = require("node:path");
    const files = new Map();
    for (const n of fs.readdirSync(${JSON.stringify(dir)})) files.set("/" + n, fs.readFileSync(path.join(${JSON.stringify(dir)}, n)));
    http.createServer((req, res) => {
      if (req.method === "POST") { let n = 0; req.on("data", (c) => (n += c.length)); req.on("end", () => res.end(n + "\\n")); return; }
      const body = files.get(req.url);
      if (!body) { res.writeHead(404); res.end(); return; }
      res.writeHead(200, { "content-type": req.url.endsWith(".html") ? "text/html; charset=utf-8" : "application/octet-stream", "content-length": body.length });
      res.end(body);
    }).listen(${port}, "127.0.0.1", () => console.log("listening"));`;
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once("data", () => resolve());
    child.once("exit", () => reject(new Error("node server did not start")));
  });
  return child;
}

/** MB/s (10^6 bytes) of one curl transfer: a GET of `url`, or a POST of `upload`'s bytes. */
export async function curlRate(url: string, upload?: string, ns?: NetNamespace): Promise<number> {
  const args = ["-sS", "--fail", "--max-time", "300", "-o", "/dev/null", "-w", "%{size_download} %{size_upload} %{time_total}",
    ...(upload ? ["--data-binary", `@${upload}`, "-H", "content-type: application/octet-stream"] : []), url];
  const r = ns ? await ns.run("curl", args, 320_000) : await runCommand("curl", args, 320_000);
  if (r.code !== 0) throw new Error(`curl ${url} failed: ${r.stderr}`);
  const [down, up, seconds] = r.stdout.toString().split(" ").map(Number) as [number, number, number];
  const bytes = upload ? up : down;
  if (bytes !== BULK_BYTES) throw new Error(`curl ${url}: moved ${bytes} bytes, expected ${BULK_BYTES}`);
  return bytes / seconds / 1e6;
}

/** Whether the appliance booted with `mib` MiB serves the wrk load without errors (and survives it). */
async function servesLoad(image: string, accel: Accel, mib: number): Promise<boolean> {
  const port = await freePort();
  let guest: Guest | undefined;
  try {
    guest = (await bootToFirst200(userNet(image, accel, port, mib << 20), port, "/612.html", 15_000)).guest;
    // A 10 s response timeout instead of wrk's 2 s: QEMU's user network listens on the host with a
    // backlog of 1, so some of wrk's 30 simultaneous connects wait for SYN retransmissions (1 s,
    // then 3 s), which says nothing about the guest's memory.
    const r = await wrk(`http://127.0.0.1:${port}/612.html`, PROBE_SECONDS, undefined, ["--timeout", "10s"]);
    const alive = await got200(port, "/612.html", 2000);
    return r.errors === 0 && r.requests > 100 && alive && guest.child.exitCode === null;
  } catch {
    return false;
  } finally {
    await guest?.stop();
  }
}

async function smallestMem(image: string, accel: Accel): Promise<number> {
  let lo = 2, hi = 64; // lo fails (assumed), hi serves
  if (!(await servesLoad(image, accel, hi))) return NaN;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (await servesLoad(image, accel, mid)) hi = mid;
    else lo = mid;
  }
  return hi;
}

/**
 * The images the web benchmarks boot: the appliance serving the small test site and the one
 * with the 100 MiB file, the upload sink, and the VMM-floor image.
 */
export async function benchImages(work: string): Promise<{ small: string; bulkSite: string; appliance: string; bulkAppliance: string; sink: string; floor: string }> {
  const small = testSite(repo, "bench-small", 1024);
  const bulkSite = testSite(repo, "bench-100m", BULK_BYTES);
  // Copied: build/serve is a cache other runs may clear while this one is going.
  const appliance = join(work, "appliance.elf"), bulkAppliance = join(work, "appliance-100m.elf");
  copyFileSync(await applianceImage(small), appliance);
  copyFileSync(await applianceImage(bulkSite), bulkAppliance);
  const sink = join(work, "upload-sink.elf");
  await buildImage({ entry: join(repo, "test/fixtures/apps/upload-sink.ts"), output: sink });
  return { small, bulkSite, appliance, bulkAppliance, sink, floor: pvhTestImage("hello") };
}

/** Runs the benchmark; returns its BENCHMARKS.md section. */
export async function webServerBenchmark(work: string): Promise<string> {
  const { small, bulkSite, appliance, bulkAppliance, sink, floor } = await benchImages(work);
  const accels: Accel[] = kvmUsable().ok ? ["kvm", "tcg"] : ["tcg"];
  const tapSkip = tapUnavailableReason();
  const out: string[] = ["## WebServer appliance (issue 4)", ""];

  // (a) launch → first HTTP 200, beside the VMM floor.
  const bootRows: (string | number)[][] = [];
  for (const accel of accels) {
    const floorMs: number[] = [], first200: number[] = [], serving: number[] = [];
    for (let i = 0; i < BOOT_RUNS[accel]; i++) {
      const port = await freePort();
      const f = await launch(userNet(floor, accel, port), "hi");
      floorMs.push(f.markerMs);
      const { ms, servingMs, guest } = await bootToFirst200(userNet(appliance, accel, port), port, "/612.html");
      first200.push(ms);
      serving.push(servingMs);
      await guest.stop();
    }
    // Each boot runs right after its floor run: the median of the pairs' differences leaves out
    // the host's drift from one pair to the next, which moves both alike.
    const f = median(floorMs), t = median(first200), over = median(first200.map((ms, i) => ms - floorMs[i]!));
    bootRows.push([accel, fmt(f), fmt(median(serving)), fmt(t), fmt(over)]);
    console.log(`webserver first 200 ${accel}: floor ${fmt(f)} ms, first 200 ${fmt(t)} ms, over floor ${fmt(over)} ms (pairs: ${first200.map((ms, i) => fmt(ms - floorMs[i]!)).join(" ")})`);
  }
  out.push(
    `**Launch → first HTTP 200** (medians of ${accels.map((a) => `${BOOT_RUNS[a]} (${a})`).join(" and ")} interleaved runs, user networking with a host port forward and the fw_cfg boot seed, as \`torito serve\` runs it).`,
    "*Floor*: the same QEMU command line (same netdev and seed) booting a PVH image that prints \"hi\" at its first",
    "instructions (`test/fixtures/pvh-test-image.S`), timed to that line. *First 200*: the appliance, timed from",
    "spawning QEMU to the first `200` status line; *\"serving\" line*: to the appliance's console line printed once",
    "it listens. Polling starts at that line (earlier connections only wait in QEMU's user network, whose host",
    "listening socket has a backlog of 1) with a new connection every ≤ 25 ms until a 200 arrives. *Over floor*: the",
    "median of each run's first 200 minus the floor run just before it (the host's drift between runs moves both).",
    "",
    table(["accel", "floor (ms)", "\"serving\" line (ms)", "first 200 (ms)", "over floor (ms)"], bootRows),
    "",
  );

  // (b) wrk, 612-byte file, keep-alive, 30 connections, beside Node.js on the host. The host is
  // shared and its speed drifts by tens of percent within minutes, so Node.js and the KVM guests
  // (user networking and tap, both booted once) are measured in interleaved rounds: each round's
  // ratio to Node.js comes from figures taken seconds apart.
  const wrkRows: (string | number)[][] = [];
  const row = (what: string, results: readonly WrkResult[], ratios?: readonly number[], ratioText = "—") => {
    const sorted = [...results].sort((a, b) => a.rps - b.rps);
    const mid = sorted[(sorted.length - 1) >> 1]!; // the median round (lower middle for an even count)
    const errors = results.reduce((n, r) => n + r.errors, 0);
    wrkRows.push([what, Math.round(mid.rps), ratios ? median(ratios).toFixed(2) : ratioText, mid.p50, mid.p99, errors]);
    console.log(`webserver wrk ${what}: ${results.map((r) => Math.round(r.rps)).join(" / ")} req/s${ratios ? `, ratio to Node.js ${ratios.map((x) => x.toFixed(2)).join(" / ")}` : ""}, errors ${errors}`);
  };
  const nodePort = await freePort();
  const nodeServer = await startNodeServer(small, nodePort);
  let ns: NetNamespace | undefined;
  let bulkTap: [number, number] | undefined;
  const kvm = accels[0]!;
  let userGuest: Guest | undefined, tapGuest: Guest | undefined;
  try {
    const userPort = await freePort();
    userGuest = (await bootToFirst200(userNet(appliance, kvm, userPort), userPort, "/612.html")).guest;
    let bootTap: ((o: RunOptions, ready: string) => Promise<Guest>) | undefined;
    let tapOptions: ((image: string, memBytes?: number) => RunOptions) | undefined;
    if (tapSkip === null) {
      ns = await NetNamespace.create("bench");
      await ns.addTap("tap0", "10.77.0.1/24");
      tapOptions = (image: string, memBytes = 64 << 20): RunOptions => ({
        image, accel: kvm, memBytes, cpus: 1, ports: [], appArgs: [], taps: [{ ifname: "tap0", vnetHdr: true }], ip: `${GUEST}/24`, gateway: "10.77.0.1", seedFile: benchSeed(),
      });
      const space = ns;
      bootTap = async (o: RunOptions, ready: string): Promise<Guest> => {
        const guest = spawnGuest(QEMU_BINARY, qemuArgs(o), (c, a) => space.spawn(c, a));
        const deadline = Date.now() + 60_000;
        while (!guest.console().includes(ready)) {
          if (Date.now() > deadline || guest.child.exitCode !== null) throw new Error(`guest did not start: ${guest.console()}`);
          await new Promise((r) => setTimeout(r, 10));
        }
        return guest;
      };
      tapGuest = await bootTap(tapOptions(appliance), "serving");
    }
    const nodeRuns: WrkResult[] = [], userRuns: WrkResult[] = [], tapRuns: WrkResult[] = [];
    for (let round = 0; round < WRK_ROUNDS; round++) {
      nodeRuns.push(await wrk(`http://127.0.0.1:${nodePort}/612.html`, WRK_SECONDS));
      userRuns.push(await wrk(`http://127.0.0.1:${userPort}/612.html`, WRK_SECONDS));
      if (tapGuest) tapRuns.push(await wrk(`http://${GUEST}/612.html`, WRK_SECONDS, ns));
    }
    await userGuest.stop();
    await tapGuest?.stop();
    const ratios = (runs: readonly WrkResult[]) => runs.map((r, i) => r.rps / nodeRuns[i]!.rps);
    row("Node.js 20 on the host, node:http (no VM)", nodeRuns, undefined, "reference");
    row(`Torito appliance, ${kvm}, user networking (hostfwd)`, userRuns, ratios(userRuns));
    if (tapGuest) row(`Torito appliance, ${kvm}, tap`, tapRuns, ratios(tapRuns));
    // TCG (when KVM was measured above): one run, for orientation; its target is against Linux + Node.js (linux-node).
    for (const accel of accels.slice(1)) {
      const port = await freePort();
      const { guest } = await bootToFirst200(userNet(appliance, accel, port), port, "/612.html");
      try {
        row(`Torito appliance, ${accel}, user networking (hostfwd)`, [await wrk(`http://127.0.0.1:${port}/612.html`, WRK_SECONDS)]);
      } finally {
        await guest.stop();
      }
    }
    if (bootTap && tapOptions) {
      // (c) over tap: 100 MiB down (appliance) and up (upload sink, counting only).
      const bulkFile = join(bulkSite, "big.bin");
      let guest = await bootTap(tapOptions(bulkAppliance, BULK_MEM), "serving");
      let tapDown: number, tapUp: number;
      try {
        tapDown = await curlRate(`http://${GUEST}/big.bin`, undefined, ns);
      } finally {
        await guest.stop();
      }
      guest = await bootTap(tapOptions(sink), "upload-sink: serving");
      try {
        tapUp = await curlRate(`http://${GUEST}/count`, bulkFile, ns);
      } finally {
        await guest.stop();
      }
      bulkTap = [tapDown, tapUp];
    }
  } finally {
    await userGuest?.stop();
    await tapGuest?.stop();
    nodeServer.kill("SIGKILL");
    await ns?.delete();
  }
  out.push(
    `**wrk** \`-t1 -c30 -d${WRK_SECONDS}s --latency\` (keep-alive) for a 612-byte HTML file (the size of nginx's default`,
    "page, the Unikraft paper's workload); guest with 1 vCPU and 64 MiB. Node.js serves the same bytes from memory",
    "with `node:http` on the host, started in the same run." + (tapSkip ? ` Tap: not measured (${tapSkip}).` : ""),
    `Node.js and the ${kvm.toUpperCase()} guests (booted once each) take turns for ${WRK_ROUNDS} rounds; each row gives the median`,
    "round (its requests/s, p50 and p99), *ratio* is the median of the rounds' ratios to Node.js's figure of the same round,",
    "and *errors* add up over all rounds." + (accels.length > 1 ? ` ${accels.slice(1).join(", ").toUpperCase()}: one run, for orientation.` : ""),
    "Over user networking QEMU listens on the host port with a backlog of 1 (`ss -ltn` shows it): of wrk's 30",
    "simultaneous connects, those the host kernel drops wait for SYN retransmissions (1 s, then 3 s), which makes",
    "the p99 there, and the ones that wait longer than wrk's 2 s timeout are the errors (wrk reports them as timeouts).",
    "",
    table(["server", "requests/s", "ratio", "p50", "p99", "errors"], wrkRows),
    "",
  );

  // (c) 100 MiB over user networking, beside Node.js on the host.
  const bulkFile = join(bulkSite, "big.bin");
  const bulkRows: (string | number)[][] = [];
  const nodeBulkPort = await freePort();
  const nodeBulk = await startNodeServer(bulkSite, nodeBulkPort);
  try {
    bulkRows.push(["Node.js on the host (no VM)", (await curlRate(`http://127.0.0.1:${nodeBulkPort}/big.bin`)).toFixed(1), (await curlRate(`http://127.0.0.1:${nodeBulkPort}/count`, bulkFile)).toFixed(1)]);
  } finally {
    nodeBulk.kill("SIGKILL");
  }
  {
    const accel = accels[0]!;
    let port = await freePort();
    let guest: Guest;
    ({ guest } = await bootToFirst200(userNet(bulkAppliance, accel, port, BULK_MEM), port, "/612.html"));
    let down: number;
    try {
      down = await curlRate(`http://127.0.0.1:${port}/big.bin`);
    } finally {
      await guest.stop();
    }
    port = await freePort();
    guest = spawnGuest(QEMU_BINARY, qemuArgs(userNet(sink, accel, port)));
    let up: number;
    try {
      const deadline = Date.now() + 60_000;
      while (!guest.console().includes("upload-sink: serving")) {
        if (Date.now() > deadline || guest.child.exitCode !== null) throw new Error(`upload sink did not start: ${guest.console()}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      up = await curlRate(`http://127.0.0.1:${port}/count`, bulkFile);
    } finally {
      await guest.stop();
    }
    bulkRows.push([`Torito, ${accel}, user networking`, down.toFixed(1), up.toFixed(1)]);
    console.log(`webserver bulk: ${JSON.stringify({ rows: bulkRows, tap: bulkTap })}`);
    if (bulkTap) bulkRows.push([`Torito, ${accel}, tap`, bulkTap[0].toFixed(1), bulkTap[1].toFixed(1)]);
  }
  out.push(
    `**Bulk transfers**: one curl GET of a ${BULK_BYTES >> 20} MiB file packed into the appliance (guest \`--mem ${BULK_MEM >> 20}M\`: the`,
    "packed file lives in guest RAM), and one curl POST of the same bytes to `test/fixtures/apps/upload-sink.ts`",
    "(`/count`: counts the body as it streams, no hashing). MB/s = 10^6 bytes per second of curl's total time.",
    "",
    table(["server", "download (MB/s)", "upload (MB/s)"], bulkRows),
    "",
  );

  // (d) smallest --mem that carries the wrk load.
  const memRows: (string | number)[][] = [];
  for (const accel of accels.slice(0, 1)) {
    const mib = await smallestMem(appliance, accel);
    memRows.push([accel, `${mib} MiB`]);
    console.log(`webserver min mem ${accel}: ${mib} MiB`);
  }
  out.push(
    `**Smallest \`--mem\`** (whole MiB, binary search) at which the appliance serves \`wrk -t1 -c30 -d${PROBE_SECONDS}s --timeout 10s\` on the`,
    "612-byte file with no socket errors and no non-2xx responses, and still answers afterwards.",
    "",
    table(["accel", "min --mem"], memRows),
    "",
  );
  return out.join("\n");
}

// `node --import tsx bench/webserver.ts` runs this section alone and prints it.
await runIfMain(import.meta, webServerBenchmark);
