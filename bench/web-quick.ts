/**
 * Quick webserver throughput check for optimisation work (not part of `npm run bench`):
 * builds the appliance, boots it on a tap device in a private network namespace, runs
 * `wrk -t1 -c30` ROUNDS times (SECONDS each) and Node.js on the host in between, and prints
 * each figure and the medians. Usage:
 *   node --import tsx bench/web-quick.ts [kvm|tcg] [seconds] [rounds] [image.elf...]
 * With images, each round measures every image in turn (A/B under the same noise) instead of
 * the appliance built from the working tree; `--save FILE` copies the built appliance to FILE.
 * `--stats` boots bench/apps/web-stats.ts instead (the appliance plus GET /__stats) and prints
 * per-request event-loop passes, virtqueue notifications, halts and interrupts for each run.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { copyFileSync } from "node:fs";
import { basename, join } from "node:path";
import { buildImage } from "../host/build.ts";
import { applianceImage } from "../host/serve.ts";
import { qemuArgs, QEMU_BINARY, type Accel } from "../host/run.ts";
import { NetNamespace, runCommand, testSite } from "../test/tools/netns.ts";
import { median } from "./lib.ts";

const argv = process.argv.slice(2);
const saveAt = argv.indexOf("--save");
const save = saveAt >= 0 ? argv.splice(saveAt, 2)[1] : undefined;
const statsAt = argv.indexOf("--stats");
const stats = statsAt >= 0 && argv.splice(statsAt, 1).length > 0;
const accel = (argv[0] ?? "kvm") as Accel;
const seconds = Number(argv[1] ?? 5);
const rounds = Number(argv[2] ?? 3);
const repo = join(import.meta.dirname, "..");
const GUEST = "10.78.0.2";

async function wrk(url: string, ns?: NetNamespace): Promise<number> {
  const args = ["-t1", "-c30", `-d${seconds}s`, url];
  const r = ns ? await ns.run("wrk", args, (seconds + 30) * 1000) : await runCommand("wrk", args, (seconds + 30) * 1000);
  const out = r.stdout.toString();
  if (/Socket errors|Non-2xx/.test(out)) console.log(out);
  return Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
}

const small = testSite(repo, "bench-small", 1024);
let images = argv.slice(3);
if (images.length === 0) {
  if (stats) {
    const output = join(repo, "build/serve/web-stats.elf");
    await buildImage({ entry: join(repo, "bench/apps/web-stats.ts"), output, files: small, cwd: repo });
    images = [output];
  } else images = [await applianceImage(small)];
  if (save) copyFileSync(images[0]!, save);
}
async function guestStats(): Promise<Record<string, number> & { net?: Record<string, number> }> {
  const r = await ns.run("curl", ["-s", `http://${GUEST}/__stats`], 10_000);
  return JSON.parse(r.stdout.toString()) as Record<string, number> & { net?: Record<string, number> };
}
const ns = await NetNamespace.create("quick");
let guest: ChildProcess | undefined;
const node = spawn(process.execPath, ["-e", `
  const http = require("node:http"), fs = require("node:fs");
  const body = fs.readFileSync(${JSON.stringify(join(small, "612.html"))});
  http.createServer((req, res) => { res.writeHead(200, { "content-type": "text/html; charset=utf-8", "content-length": body.length }); res.end(body); })
    .listen(0, "127.0.0.1", function () { console.log(this.address().port); });`], { stdio: ["ignore", "pipe", "inherit"] });
const nodePort = await new Promise<number>((resolve) => node.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString()))));
try {
  await ns.addTap("tap0", "10.78.0.1/24");
  const boot = async (image: string): Promise<ChildProcess> => {
    const child = ns.spawn(QEMU_BINARY, qemuArgs({ image, accel, memBytes: 64 << 20, cpus: 1, ports: [], appArgs: [], taps: [{ ifname: "tap0", vnetHdr: true }], ip: `${GUEST}/24`, gateway: "10.78.0.1" }));
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    const deadline = Date.now() + 60_000;
    while (!out.includes("serving")) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`guest did not start: ${out}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return child;
  };
  const t: number[][] = images.map(() => []), n: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const line: string[] = [];
    for (const [k, image] of images.entries()) {
      guest = await boot(image);
      const before = stats ? await guestStats() : null;
      t[k]!.push(await wrk(`http://${GUEST}/612.html`, ns));
      if (before) {
        const after = await guestStats();
        const n = after.requests! - before.requests!;
        const per = (key: string) => ((after[key]! - before[key]!) / n).toFixed(3);
        const net = (o: { net?: Record<string, number> }) => o.net!;
        const perNet = (key: string) => ((net(after)[key]! - net(before)[key]!) / n).toFixed(3);
        console.log(`  ${basename(image)}: per request: turns ${per("turns")}, rx notifies ${per("rxNotifications")}, tx notifies ${per("txNotifications")}, halts ${per("halts")}, interrupts ${per("interruptsHandled")}, frames in ${perNet("rxFrames")}, out ${perNet("txFrames")}, idle µs ${(1000 * (after.idleMs! - before.idleMs!) / n).toFixed(1)}`);
      }
      guest.kill("SIGKILL");
      await new Promise((r) => guest!.once("exit", r));
      guest = undefined;
      line.push(`${basename(image)} ${Math.round(t[k]![i]!)}`);
    }
    n.push(await wrk(`http://127.0.0.1:${nodePort}/612.html`));
    console.log(`round ${i}: ${accel}: ${line.join(", ")} req/s; node ${Math.round(n[i]!)} req/s`);
  }
  const mn = median(n);
  for (const [k, image] of images.entries()) {
    const mt = median(t[k]!);
    console.log(`median ${basename(image)} ${accel}: ${Math.round(mt)} req/s (${Math.round(1e6 / mt)} µs/req), ratio to node ${(mt / mn).toFixed(3)}`);
  }
  console.log(`median node: ${Math.round(mn)} req/s`);
} finally {
  guest?.kill("SIGKILL");
  node.kill("SIGKILL");
  await ns.delete();
}
