/**
 * Quick webserver throughput check for optimisation work (not part of `npm run bench`):
 * builds the appliance, boots it on a tap device in a private network namespace, runs
 * `wrk -t1 -c30` ROUNDS times (SECONDS each) and Node.js on the host in between, and prints
 * each figure and the medians. Usage: node --import tsx bench/web-quick.ts [kvm|tcg] [seconds] [rounds]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { applianceImage } from "../host/serve.ts";
import { qemuArgs, QEMU_BINARY, type Accel } from "../host/run.ts";
import { NetNamespace, runCommand, testSite } from "../test/tools/netns.ts";
import { median } from "./lib.ts";

const accel = (process.argv[2] ?? "kvm") as Accel;
const seconds = Number(process.argv[3] ?? 5);
const rounds = Number(process.argv[4] ?? 3);
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
const image = await applianceImage(small);
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
  guest = ns.spawn(QEMU_BINARY, qemuArgs({ image, accel, memBytes: 64 << 20, cpus: 1, ports: [], appArgs: [], tap: { ifname: "tap0", vnetHdr: true }, ip: `${GUEST}/24`, gateway: "10.78.0.1" }));
  let out = "";
  guest.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  guest.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 60_000;
  while (!out.includes("serving")) {
    if (Date.now() > deadline || guest.exitCode !== null) throw new Error(`guest did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  const t: number[] = [], n: number[] = [];
  for (let i = 0; i < rounds; i++) {
    t.push(await wrk(`http://${GUEST}/612.html`, ns));
    n.push(await wrk(`http://127.0.0.1:${nodePort}/612.html`));
    console.log(`round ${i}: torito ${accel} ${Math.round(t[i]!)} req/s, node ${Math.round(n[i]!)} req/s`);
  }
  const mt = median(t), mn = median(n);
  console.log(`median: torito ${accel} ${Math.round(mt)} req/s (${Math.round(1e6 / mt)} µs/req), node ${Math.round(mn)} req/s, ratio ${(mt / mn).toFixed(3)}`);
} finally {
  guest?.kill("SIGKILL");
  node.kill("SIGKILL");
  await ns.delete();
}
