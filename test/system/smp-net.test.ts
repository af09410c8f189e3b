// Dedicated devices (issue 6): with --cpus 2 every core owns its own NIC (torito run --port
// HOST:80@CORE), its interrupts are routed to that core, and each core runs its own TCP/IP
// stack and web server; one core running out of memory leaves the other serving.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { describe, test } from "node:test";
import { kvmUsable, type Accel } from "../../host/run.ts";
import { applianceImage } from "../../host/serve.ts";
import { repo, testImages } from "../helpers/images.ts";
import { freePort } from "../helpers/ports.ts";

const cli = join(repo, "bin/torito.js");
const site = join(repo, "examples/static-web-server/site");
const images = testImages("smp-net", { serve: "test/fixtures/apps/smp-serve.ts" });
const accels: Accel[] = kvmUsable().ok ? ["kvm", "tcg"] : ["tcg"];

interface Guest {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function boot(args: string[]): Guest {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  return { child, output: () => out, exited };
}

async function waitFor(guest: Guest, pattern: RegExp, count = 1, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while ((guest.output().match(new RegExp(pattern, "gm"))?.length ?? 0) < count) {
    if (Date.now() > deadline || guest.child.exitCode !== null) throw new Error(`waiting for ${pattern}:\n${guest.output()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** GET with curl (a fresh connection each time); status 0 when no answer came. */
function get(port: number, path = "/", maxTime = 20): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("curl", ["-s", "--max-time", String(maxTime), "-w", "\n%{http_code}", `http://127.0.0.1:${port}${path}`], { stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.on("error", reject);
    child.on("close", () => {
      const cut = out.lastIndexOf("\n");
      resolve({ status: Number(out.slice(cut + 1)), body: out.slice(0, cut) });
    });
  });
}

interface Report {
  core: number;
  halts: number;
  interrupts: number;
  devices: { kind: string; core: number; irq: number; active: boolean }[];
}

for (const accel of accels) {
  describe(`dedicated devices under ${accel}`, () => {
    test("each core serves on its own NIC, woken by its own interrupts; core 1's OOM leaves core 0 serving", async () => {
      const ports = [await freePort(), await freePort()];
      const guest = boot(["run", images.serve, "--accel", accel, "--cpus", "2", "--mem", "64M", "--rng", "--timeout", "120",
        "--port", `${ports[0]}:80@0`, "--port", `${ports[1]}:80@1`]);
      try {
        await waitFor(guest, /^core \d serving$/, 2);
        const first: Report[] = [];
        for (const core of [0, 1]) {
          const r = await get(ports[core]!);
          assert.equal(r.status, 200);
          first.push(JSON.parse(r.body) as Report);
          assert.equal(first[core]!.core, core, "the reply comes from the core that owns the NIC");
        }
        // The VMM's order: NIC 0, NIC 1, rng 0, rng 1; device i of a kind belongs to core i,
        // and with acpi=on the interrupts sit on the second IOAPIC (GSI 24 and up).
        assert.deepEqual(first[0]!.devices.map((d) => [d.kind, d.core]), [["net", 0], ["net", 1], ["rng", 0], ["rng", 1]]);
        for (const d of first[0]!.devices) assert.ok(d.irq >= 24, `irq ${d.irq}`);
        for (const core of [0, 1]) {
          assert.deepEqual(first[core]!.devices.filter((d) => d.active).map((d) => d.core), [core, core], "a core drives only its own devices");
        }
        // Idle spin 0: between requests each core halts, and only its NIC's interrupt, routed
        // to it, can wake it to answer the next one.
        for (let i = 0; i < 3; i++) {
          await new Promise((r) => setTimeout(r, 100));
          for (const core of [0, 1]) assert.equal((await get(ports[core]!)).status, 200);
        }
        for (const core of [0, 1]) {
          const later = JSON.parse((await get(ports[core]!)).body) as Report;
          assert.ok(later.halts > first[core]!.halts, `core ${core} halted between requests (${first[core]!.halts} -> ${later.halts})`);
          assert.ok(later.interrupts >= first[core]!.interrupts + 3, `core ${core} was woken by its interrupts (${first[core]!.interrupts} -> ${later.interrupts})`);
        }

        assert.equal((await get(ports[1]!, "/oom")).body, "hoarding\n");
        await waitFor(guest, /^torito: core 1 stopped; the other cores go on$/);
        assert.match(guest.output(), /^fatal: JavaScript heap out of memory on core 1 \(limit \d+ KiB/m);
        for (let i = 0; i < 5; i++) {
          const r = await get(ports[0]!);
          assert.equal(r.status, 200);
          assert.equal((JSON.parse(r.body) as Report).core, 0);
        }
        assert.equal((await get(ports[1]!, "/", 1.5)).status, 0, "core 1 no longer answers");
        assert.equal((await get(ports[0]!, "/exit")).body, "bye\n");
        assert.equal(await guest.exited, 0, guest.output());
      } finally {
        guest.child.kill("SIGTERM");
      }
    });

    test("torito serve --cpus 2: the appliance serves the site from both cores, one host port each", async () => {
      const port = await freePort();
      const appliance = await applianceImage(site);
      assert.ok(appliance.length > 0);
      const guest = boot(["serve", site, "--accel", accel, "--cpus", "2", "--port", String(port), "--timeout", "120"]);
      try {
        await waitFor(guest, /^static-web-server: serving \/app on port 80 \(core \d\)$/, 2);
        for (const p of [port, port + 1]) {
          const r = await get(p, "/");
          assert.equal(r.status, 200);
          assert.match(r.body, /<html/i);
        }
      } finally {
        guest.child.kill("SIGTERM");
        await guest.exited;
      }
    });
  });
}
