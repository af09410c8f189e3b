// The guest's TCP/IP against Linux's own TCP through a tap device, everything inside a network
// namespace this test creates and deletes (tap, addresses, QEMU, curl and wget), so nothing
// touches the machine's network: `torito run --net tap:NAME --ip --gw`, the WebServer appliance
// with a 4 MiB file packed in, 4 MiB uploads to a hashing guest app
// (test/fixtures/apps/upload-sink.ts), and the same transfers through a fault-injecting relay
// (test/tools/fault-relay.ts) that drops, reorders, duplicates and delays frames.
// Needs root and /dev/net/tun (skipped otherwise). Runs under the default accelerator only
// (KVM when usable); the appliance's TCG coverage is in webserver.test.ts.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { buildImage } from "../../host/build.ts";
import { RUN_FLAGS, runOptionsFromArgs, parseArgs } from "../../host/cli.ts";
import { applianceImage } from "../../host/serve.ts";
import { kvmUsable, qemuArgs, UsageError, type Accel } from "../../host/run.ts";
import { FaultRelay, type FaultSettings } from "../tools/fault-relay.ts";
import { NetNamespace, tapUnavailableReason, testSite } from "../tools/netns.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "../..");
const cli = join(repo, "bin/torito.js");
const accel = (process.env["TORITO_ACCEL"] || (kvmUsable().ok ? "kvm" : "tcg")) as Accel;
const skip = tapUnavailableReason() ?? false;
const BIG = 4 << 20;
const HOST = "10.77.0.1";
const GUEST = "10.77.0.2";
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

describe("torito run --net / --ip / --gw", () => {
  const options = (...argv: string[]) => runOptionsFromArgs(parseArgs(["x.elf", "--accel", "kvm", ...argv], RUN_FLAGS, "run"), () => {});

  test("a tap netdev with vnet headers, and the static address on the kernel command line", () => {
    const argv = qemuArgs(options("--net", "tap:tt0", "--ip", "10.77.0.2/24", "--gw", "10.77.0.1", "--dns", "10.77.0.1"));
    const line = argv.join(" ");
    assert.match(line, / -netdev tap,id=net0,ifname=tt0,script=no,downscript=no,vnet_hdr=on -device virtio-net-device,netdev=net0 /);
    assert.equal(argv[argv.indexOf("-append") + 1], "torito.accel=kvm torito.ip=10.77.0.2/24 torito.gw=10.77.0.1 torito.dns=10.77.0.1 --");
  });

  test("without --ip the guest is left to DHCP; vnet_hdr=off drops the offload", () => {
    const argv = qemuArgs(options("--net", "tap:tt0,vnet_hdr=off"));
    assert.match(argv.join(" "), /-netdev tap,id=net0,ifname=tt0,script=no,downscript=no -device/);
    assert.equal(argv[argv.indexOf("-append") + 1], "torito.accel=kvm --");
  });

  for (const [argv, message] of [
    [["--net", "tap:"], /bad --net 'tap:'/],
    [["--net", "tap:a-name-that-is-too-long"], /bad --net/],
    [["--net", "user"], /expected tap:NAME/],
    [["--net", "tap:x", "--port", "80:80"], /--net and --port/],
    [["--net", "tap:x", "--netdev", "user"], /--net and --netdev/],
    [["--net", "tap:x", "--ip", "10.0.0.2"], /bad --ip '10.0.0.2' \(expected ADDRESS\/PREFIX/],
    [["--net", "tap:x", "--ip", "10.0.0.256/24"], /bad --ip '10.0.0.256\/24'/],
    [["--net", "tap:x", "--ip", "10.0.0.2/33"], /bad --ip/],
    [["--net", "tap:x", "--gw", "10.0.0.1"], /--gw needs --ip/],
    [["--net", "tap:x", "--ip", "10.0.0.2/24", "--gw", "10.0.0"], /bad --gw '10.0.0'/],
    [["--ip", "10.0.0.2/24"], /--ip needs --net or --netdev/],
    [["--port", "8080:80", "--ip", "10.0.0.2/24"], /--ip needs --net/],
  ] as const) {
    test(`refuses ${argv.join(" ")}`, () => {
      assert.throws(() => options(...argv), (e: unknown) => e instanceof UsageError && message.test(e.message));
    });
  }
});

/** A guest booted with the CLI inside the namespace; its console is collected. */
class Guest {
  console = "";
  private constructor(readonly child: ChildProcess) {
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (this.console += d));
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (this.console += d));
  }

  static async boot(ns: NetNamespace, image: string, net: string[], ready: string): Promise<Guest> {
    const guest = new Guest(ns.spawn(process.execPath, [cli, "run", image, "--accel", accel, "--mem", "64M", "--timeout", "300", ...net]));
    const deadline = Date.now() + 60_000;
    while (!guest.console.includes(ready)) {
      if (Date.now() > deadline || guest.child.exitCode !== null) throw new Error(`guest did not start:\n${guest.console}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return guest;
  }

  stop(): void {
    this.child.kill("SIGKILL");
  }
}

/** curl inside the namespace; returns the body (throws with curl's error and the guest console). */
async function curl(ns: NetNamespace, guest: Guest, args: string[], timeoutMs = 60_000): Promise<Buffer> {
  const r = await ns.run("curl", ["-sS", "--fail", "--max-time", String(timeoutMs / 1000), ...args], timeoutMs + 5000);
  if (r.code !== 0) throw new Error(`curl ${args.join(" ")} failed (${r.code}): ${r.stderr}\nguest console:\n${guest.console}`);
  return r.stdout;
}

describe("over a tap device, with Linux's TCP as the peer", { skip }, () => {
  let ns: NetNamespace;
  let site: string;
  let work: string;
  let big: Buffer;

  before(async () => {
    site = testSite(repo, "tap-4m", BIG);
    big = readFileSync(join(site, "big.bin"));
    work = mkdtempSync(join(tmpdir(), "torito-net-tap-"));
    ns = await NetNamespace.create("tap");
    await ns.addTap("tap0", `${HOST}/24`);
  });
  after(async () => {
    await ns?.delete();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  describe("the WebServer appliance", () => {
    let guest: Guest;
    before(async () => {
      guest = await Guest.boot(ns, await applianceImage(site), ["--net", "tap:tap0", "--ip", `${GUEST}/24`, "--gw", HOST], "static-web-server: serving");
    });
    after(() => guest?.stop());

    test("answers ping and serves index.html with its headers", async () => {
      const ping = await ns.run("ping", ["-c", "3", "-i", "0.2", "-W", "2", GUEST], 10_000);
      assert.match(ping.stdout.toString(), / 0% packet loss/, ping.stdout.toString());
      const out = (await curl(ns, guest, ["-i", `http://${GUEST}/`])).toString("latin1");
      const body = readFileSync(join(site, "index.html"), "latin1");
      assert.match(out, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(out, new RegExp(`\\r\\ncontent-length: ${body.length}\\r\\n`, "i"));
      assert.ok(out.endsWith(`\r\n\r\n${body}`));
    });

    test("curl downloads 4 MiB byte-exact", async () => {
      assert.equal(sha256(await curl(ns, guest, [`http://${GUEST}/big.bin`])), sha256(big));
    });

    test("wget downloads 4 MiB byte-exact, and keep-alive requests reuse one connection", async () => {
      const file = join(work, "wget-big.bin");
      const r = await ns.run("wget", ["-q", "-O", file, `http://${GUEST}/big.bin`], 60_000);
      assert.equal(r.code, 0, r.stderr + guest.console);
      assert.equal(sha256(readFileSync(file)), sha256(big));
      const many = await ns.run("curl", ["-sS", "-v", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null", `http://${GUEST}/612.html`, `http://${GUEST}/612.html`, `http://${GUEST}/index.html`], 20_000);
      assert.equal(many.code, 0, many.stderr);
      assert.equal([...many.stderr.matchAll(/Re-using existing connection/gi)].length, 2, many.stderr);
    });
  });

  describe("uploads to a guest app", () => {
    let guest: Guest;
    before(async () => {
      const image = join(work, "upload-sink.elf");
      await buildImage({ entry: join(repo, "test/fixtures/apps/upload-sink.ts"), output: image, files: site });
      guest = await Guest.boot(ns, image, ["--net", "tap:tap0", "--ip", `${GUEST}/24`, "--gw", HOST], "upload-sink: serving");
    });
    after(() => guest?.stop());

    const counters = async () =>
      (JSON.parse((await curl(ns, guest, [`http://${GUEST}/net`])).toString()) as { counters: { framesReceived: number; framesSent: number } }).counters;
    const framesReceived = async () => (await counters()).framesReceived;

    test("curl uploads 4 MiB and the guest's SHA-256 matches; Linux's large segments arrive whole (GUEST_TSO4)", async () => {
      const before = await framesReceived();
      const out = (await curl(ns, guest, ["--data-binary", `@${join(site, "big.bin")}`, "-H", "content-type: application/octet-stream", `http://${GUEST}/sha256`])).toString();
      assert.equal(out, `${BIG} ${sha256(big)}\n`);
      // 4 MiB in MTU-sized segments would be ~2900 frames; with the offload most are up to 64 KiB.
      const frames = (await framesReceived()) - before;
      assert.ok(frames < BIG / 1448 / 3, `${frames} frames for ${BIG} bytes: no large segments`);
    });

    test("curl downloads 4 MiB byte-exact, sent in large segments the device cuts (HOST_TSO4)", async () => {
      const before = (await counters()).framesSent;
      assert.equal(sha256(await curl(ns, guest, [`http://${GUEST}/big.bin`])), sha256(big));
      const frames = (await counters()).framesSent - before;
      assert.ok(frames < BIG / 1448 / 3, `${frames} frames for ${BIG} bytes: no large segments`);
    });

    test("wget uploads 4 MiB and the guest's SHA-256 matches", async () => {
      const file = join(work, "wget-post.out");
      const r = await ns.run("wget", ["-q", "-O", file, `--post-file=${join(site, "big.bin")}`, `http://${GUEST}/sha256`], 60_000);
      assert.equal(r.code, 0, r.stderr + guest.console);
      assert.equal(readFileSync(file, "utf8"), `${BIG} ${sha256(big)}\n`);
    });
  });

  describe("the address's announcement", () => {
    test("leaves when the stack comes up, not when the app's synchronous start-up ends", async () => {
      // Linux adds a neighbour from a gratuitous ARP only with arp_accept; the guest then keeps
      // its core busy for 1.5 s after the stack came up (test/fixtures/apps/announce-spin.ts).
      await ns.must("sysctl", ["-q", "-w", "net.ipv4.conf.tap0.arp_accept=1"]);
      await ns.must("ip", ["neigh", "flush", "dev", "tap0"]);
      const image = join(work, "announce-spin.elf");
      await buildImage({ entry: join(repo, "test/fixtures/apps/announce-spin.ts"), output: image });
      const guest = await Guest.boot(ns, image, ["--net", "tap:tap0", "--ip", `${GUEST}/24`, "--gw", HOST], "announce-spin: up");
      try {
        let neighbour = "";
        while (!guest.console.includes("announce-spin: spun") && guest.child.exitCode === null) {
          neighbour = (await ns.must("ip", ["neigh", "show", GUEST, "dev", "tap0"])).toString();
          if (neighbour.includes("lladdr")) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        assert.match(neighbour, /lladdr/, `no ARP announcement from the guest before its start-up ended:\n${guest.console}`);
      } finally {
        guest.stop();
      }
    });
  });

  describe("through a relay that injects faults", () => {
    const RELAY_PORT = 40002, QEMU_PORT = 40001;
    let relay: FaultRelay;
    let guest: Guest;
    before(async () => {
      // A second namespace-local tap for the relay; the guest reaches it only through the relay.
      await ns.must("ip", ["link", "set", "tap0", "down"]);
      await ns.must("ip", ["addr", "flush", "dev", "tap0"]);
      await ns.addTap("relay0", `${HOST}/24`);
      relay = await FaultRelay.start((cmd, args) => ns.spawn(cmd, args, { cwd: repo, stdio: ["pipe", "pipe", "pipe"] }), { tap: "relay0", port: RELAY_PORT, qemuPort: QEMU_PORT, seed: 4242 });
      const image = join(work, "upload-sink-files.elf");
      await buildImage({ entry: join(repo, "test/fixtures/apps/upload-sink.ts"), output: image, files: site });
      guest = await Guest.boot(ns, image, ["--netdev", FaultRelay.netdev(RELAY_PORT, QEMU_PORT), "--ip", `${GUEST}/24`, "--gw", HOST], "upload-sink: serving");
    });
    after(() => {
      guest?.stop();
      relay?.stop();
    });

    /** 4 MiB down and 4 MiB up under `faults`, byte-exact; then a clean request on a fresh connection. */
    async function transfers(faults: Partial<FaultSettings>): Promise<void> {
      await relay.set(faults);
      const down = await curl(ns, guest, [`http://${GUEST}/big.bin`], 90_000);
      assert.equal(sha256(down), sha256(big), "download");
      const up = (await curl(ns, guest, ["--data-binary", `@${join(site, "big.bin")}`, "-H", "content-type: application/octet-stream", `http://${GUEST}/sha256`], 90_000)).toString();
      assert.equal(up, `${BIG} ${sha256(big)}\n`, "upload");
      await relay.set({});
      assert.match((await curl(ns, guest, [`http://${GUEST}/612.html`], 20_000)).toString(), /Welcome to Torito/);
    }

    test("without faults the relay carries both directions", async () => {
      await transfers({});
      const s = await relay.stats();
      assert.ok(s.toTap.delivered > 1000 && s.toGuest.delivered > 1000, JSON.stringify(s));
    });

    test("5% loss each way: 4 MiB down and up arrive byte-exact", async () => {
      const before = await relay.stats();
      await transfers({ loss: 0.05 });
      const s = await relay.stats();
      assert.ok(s.toTap.dropped - before.toTap.dropped > 50 && s.toGuest.dropped - before.toGuest.dropped > 50, JSON.stringify(s));
    });

    test("reordering (10% of frames held behind 1-3 later ones)", async () => {
      const before = await relay.stats();
      await transfers({ reorder: 0.1 });
      const s = await relay.stats();
      assert.ok(s.toTap.reordered - before.toTap.reordered > 100 && s.toGuest.reordered - before.toGuest.reordered > 100, JSON.stringify(s));
    });

    test("duplication (5% of frames sent twice)", async () => {
      const before = await relay.stats();
      await transfers({ duplicate: 0.05 });
      const s = await relay.stats();
      assert.ok(s.toTap.duplicated - before.toTap.duplicated > 50 && s.toGuest.duplicated - before.toGuest.duplicated > 50, JSON.stringify(s));
    });

    test("20 ms delay each way", async () => {
      await relay.set({ delayMs: 20 });
      const r = await ns.run("curl", ["-sS", "-o", "/dev/null", "-w", "%{time_connect}", `http://${GUEST}/612.html`], 20_000);
      assert.ok(Number(r.stdout.toString()) >= 0.039, `connect took ${r.stdout.toString()} s: the delay is not applied`);
      await transfers({ delayMs: 20 });
    });

    test("everything at once: loss, reordering, duplication and delay", async () => {
      await transfers({ loss: 0.03, reorder: 0.05, duplicate: 0.03, delayMs: 5 });
    });
  });
});
