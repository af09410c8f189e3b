// One multiqueue NIC for two cores (issue 6, item 5): `torito run --cpus 2 --net tap:NAME,mq
// --ip A/N` gives every core a queue pair of one virtio-net device and its own TCP/IP stack
// on the shared address. Inside a network namespace this test creates (a multi_queue tap,
// QEMU, curl, wrk and a Linux TCP listener), Linux's tun spreads the connections over the
// two queues: both cores must serve on their own pair, every response must be right, a
// keep-alive connection must stay on one core, a halted core 1 must be woken through the
// owner's interrupt (idle spin 0), and core 1 must be able to connect out to an address it
// has to resolve with ARP while core 0 does the same (a reply may land on the other core's
// queue). Then the WebServer appliance with `torito serve --cpus 2 --net tap:NAME,mq`.
// Needs root and /dev/net/tun.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { kvmUsable, type Accel } from "../../host/run.ts";
import { applianceImage } from "../../host/serve.ts";
import { repo, testImages } from "../helpers/images.ts";
import { NetNamespace, tapUnavailableReason, testSite } from "../tools/netns.ts";

const cli = join(repo, "bin/torito.js");
const site = join(repo, "examples/static-web-server/site");
const images = testImages("smp-mq", { serve: "test/fixtures/apps/smp-mq-serve.ts" });
const accels: Accel[] = kvmUsable().ok ? ["kvm", "tcg"] : ["tcg"];
const skip = tapUnavailableReason() ?? false;
const HOST = "10.79.0.1";
/** More host addresses on the tap: nothing in the guest has talked to them, so reaching them needs ARP. */
const OTHER = "10.79.0.3";
const FOURTH = "10.79.0.4";
const GUEST = "10.79.0.2";
const TAP = "tmq0";

class Guest {
  console = "";
  constructor(readonly child: ChildProcess) {
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (this.console += d));
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (this.console += d));
  }

  async waitFor(pattern: RegExp, count = 1, ms = 90_000): Promise<void> {
    const deadline = Date.now() + ms;
    while ((this.console.match(new RegExp(pattern, "gm"))?.length ?? 0) < count) {
      if (Date.now() > deadline || this.child.exitCode !== null) throw new Error(`waiting for ${pattern}:\n${this.console}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  exited(): Promise<number | null> {
    return this.child.exitCode !== null ? Promise.resolve(this.child.exitCode) : new Promise((resolve) => this.child.once("exit", resolve));
  }
}

/** curl inside the namespace (one connection per URL unless they share one invocation); the bodies. */
async function curl(ns: NetNamespace, guest: Guest, urls: string[], maxTime = 30): Promise<string> {
  const r = await ns.run("curl", ["-sS", "--fail", "--max-time", String(maxTime), ...urls], (maxTime + 10) * 1000);
  if (r.code !== 0) throw new Error(`curl ${urls.join(" ")} failed (${r.code}): ${r.stderr}\nguest console:\n${guest.console}`);
  return r.stdout.toString();
}

interface CoreStats {
  core: number;
  requests: number;
  halts: number;
  net: { counters: { arpRequestsSent: number; tcp: { segmentsReceived: number; resetsSent: number }; steering: { forwardedOut: number; forwardedIn: number; arpShared: number } } };
}

describe("one multiqueue NIC, a queue pair and a TCP/IP stack per core", { skip }, () => {
  let ns: NetNamespace;
  let listener: ChildProcess;

  before(async () => {
    ns = await NetNamespace.create("mq");
    await ns.addTap(TAP, `${HOST}/24`, { multiQueue: true });
    await ns.must("ip", ["addr", "add", `${OTHER}/24`, "dev", TAP]);
    await ns.must("ip", ["addr", "add", `${FOURTH}/24`, "dev", TAP]);
    // The peer core 1 connects out to: answers "echo:" + what it got, then closes.
    listener = ns.spawn(process.execPath, ["-e", `require("net").createServer((s) => s.on("data", (d) => s.end("echo:" + d))).listen(9000, () => console.log("listening"))`]);
    await new Promise<void>((resolve, reject) => {
      listener.stdout!.once("data", () => resolve());
      listener.once("exit", (code) => reject(new Error(`listener exited (${code})`)));
    });
  });
  after(async () => {
    await ns?.delete();
  });

  for (const accel of accels) {
    test(`under ${accel}: both cores serve on their own queue pair; core 1 connects out through ARP`, async () => {
      const guest = new Guest(ns.spawn(process.execPath, [cli, "run", images.serve, "--accel", accel, "--cpus", "2", "--mem", "64M", "--rng",
        "--timeout", "240", "--net", `tap:${TAP},mq`, "--ip", `${GUEST}/24`]));
      try {
        await guest.waitFor(/^core \d serving$/, 2);
        // Flush the namespace's neighbour entry for the guest so that no stale state from a
        // previous boot decides anything.
        await ns.run("ip", ["neigh", "flush", "dev", TAP]);

        // Both cores connect out at once to addresses their stacks have never seen, so each
        // sends an ARP request from its own queue. tun steers every ARP frame alike (no flow in
        // it: to the queue that last sent one), so both replies tend to land on ONE queue, and
        // the other core learns its answer from the copy the receiving core gives it.
        const [out1, out0] = await Promise.all([
          curl(ns, guest, [`http://${GUEST}/connect/1/${OTHER}/9000`]),
          curl(ns, guest, [`http://${GUEST}/connect/0/${FOURTH}/9000`]),
        ]);
        assert.equal(out1, "core 1 local port ok: echo:hello from core 1\n");
        assert.equal(out0, "core 0 local port ok: echo:hello from core 0\n");
        assert.equal(await curl(ns, guest, [`http://${GUEST}/connect/1/${HOST}/9000`]), "core 1 local port ok: echo:hello from core 1\n");

        // Many connections: tun spreads them over both queues by flow hash.
        const seen = [0, 0];
        const batches = 8, parallel = 6;
        for (let b = 0; b < batches; b++) {
          const replies = await Promise.all(Array.from({ length: parallel }, () => curl(ns, guest, [`http://${GUEST}/`])));
          for (const body of replies) {
            const r = JSON.parse(body) as { core: number; requests: number };
            assert.ok(r.core === 0 || r.core === 1, body);
            assert.ok(r.requests >= 1);
            seen[r.core]!++;
          }
          // A pause: with idle spin 0 both cores halt; core 1 is woken by the owner's IPI.
          if (b % 2 === 1) await new Promise((r) => setTimeout(r, 150));
        }
        assert.ok(seen[0]! > 0 && seen[1]! > 0, `both cores served (${seen.join(" / ")})`);

        // A keep-alive connection stays on one core: 10 requests over one connection.
        const bodies = (await curl(ns, guest, Array.from({ length: 10 }, () => `http://${GUEST}/`))).match(/\{[^}]*\}/g)!;
        assert.equal(bodies.length, 10);
        assert.equal(new Set(bodies.map((b) => (JSON.parse(b) as { core: number }).core)).size, 1, bodies.join(" "));

        // wrk: many connections at once, every response complete.
        const wrk = await ns.run("wrk", ["-t1", "-c8", "-d2s", `http://${GUEST}/`], 30_000);
        const wrkOut = wrk.stdout.toString();
        assert.equal(wrk.code, 0, wrkOut + wrk.stderr);
        assert.doesNotMatch(wrkOut, /Non-2xx|Socket errors/, wrkOut);
        assert.match(wrkOut, /\d+ requests in/);

        const all = JSON.parse(await curl(ns, guest, [`http://${GUEST}/all`])) as CoreStats[];
        assert.deepEqual(all.map((s) => s.core), [0, 1]);
        for (const s of all) {
          assert.ok(s.requests >= seen[s.core]!, `core ${s.core} counted ${s.requests} requests, the client saw ${seen[s.core]}`);
          assert.ok(s.net.counters.tcp.segmentsReceived > 0, `core ${s.core} received on its own pair`);
          assert.equal(s.net.counters.tcp.resetsSent, 0, `core ${s.core} reset no connection (no segment reached a core that did not own it)`);
        }
        assert.ok(all[1]!.net.counters.arpRequestsSent >= 1, "core 1 resolved OTHER itself");
        assert.ok(all[0]!.net.counters.arpRequestsSent >= 1, "core 0 resolved FOURTH itself");
        assert.ok(all[1]!.halts > 0, "core 1 halted between requests (and was woken through the owner)");
        assert.ok(all[0]!.net.counters.steering.arpShared + all[1]!.net.counters.steering.arpShared > 0, "ARP frames were shared");

        const list = JSON.parse(await curl(ns, guest, [`http://${GUEST}/devices`])) as { kind: string; core: number; active: boolean; queuePairs: unknown }[];
        const nics = list.filter((d) => d.kind === "net");
        assert.equal(nics.length, 1, "one NIC for the VM");
        assert.equal(nics[0]!.core, 0, "owned by core 0");
        assert.ok(nics[0]!.active);
        assert.deepEqual(nics[0]!.queuePairs, [{ core: 0, pair: 0, rxQueue: 0, txQueue: 1 }, { core: 1, pair: 1, rxQueue: 2, txQueue: 3 }]);

        assert.equal(await curl(ns, guest, [`http://${GUEST}/exit`]), "bye\n");
        assert.equal(await guest.exited(), 0, guest.console);
      } finally {
        guest.child.kill("SIGTERM");
        await guest.exited();
      }
    });
  }

  test("torito serve --cpus 2 --net tap:NAME,mq: the appliance serves the site from both cores on one address", async () => {
    // 1 MiB files go out in large segments (HOST_TSO4) from whichever core the flow lands on.
    const bigSite = testSite(repo, "mq-1m", 1 << 20);
    const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");
    const appliance = await applianceImage(bigSite);
    assert.ok(appliance.length > 0);
    const guest = new Guest(ns.spawn(process.execPath, [cli, "serve", bigSite, "--cpus", "2", "--net", `tap:${TAP},mq`, "--ip", `${GUEST}/24`, "--timeout", "120"]));
    try {
      await guest.waitFor(/^static-web-server: serving \/app on port 80 \(core \d\)$/, 2);
      const index = await curl(ns, guest, [`http://${GUEST}/`]);
      assert.equal(index, readFileSync(join(bigSite, "index.html"), "utf8"));
      const replies = await Promise.all(Array.from({ length: 12 }, () => curl(ns, guest, [`http://${GUEST}/`])));
      for (const body of replies) assert.equal(body, index);
      const big = sha256(readFileSync(join(bigSite, "big.bin")));
      const downloads = await Promise.all(Array.from({ length: 8 }, () => ns.run("curl", ["-sS", "--fail", "--max-time", "30", `http://${GUEST}/big.bin`], 40_000)));
      for (const r of downloads) {
        assert.equal(r.code, 0, r.stderr + guest.console);
        assert.equal(sha256(r.stdout), big);
      }
    } finally {
      guest.child.kill("SIGTERM");
      await guest.exited();
    }
  });
});
