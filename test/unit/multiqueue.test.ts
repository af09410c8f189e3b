// One multiqueue NIC for every core (torito run --cpus N --net tap:NAME,mq): the host's
// option parsing and QEMU command line, and the guest's per-core steering rules
// (kernel/net/multiqueue.ts). The guest side against QEMU and Linux is test/system/smp-mq.test.ts.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { RUN_FLAGS, parseArgs, runOptionsFromArgs } from "../../host/cli.ts";
import { checkMultiqueueTap, parseNet, qemuArgs, UsageError } from "../../host/run.ts";
import { ephemeralRange, portCore, steerFrame, STEER_ARP, STEER_LOCAL } from "../../kernel/net/multiqueue.ts";

const options = (...argv: string[]) => runOptionsFromArgs(parseArgs(["x.elf", "--accel", "kvm", ...argv], RUN_FLAGS, "run"), () => {});

describe("torito run --net tap:NAME,mq", () => {
  test("one NIC with a queue pair per core: queues=N on the tap, mq=on on the device, torito.net.mq=N for the guest", () => {
    const argv = qemuArgs(options("--cpus", "2", "--net", "tap:mq0,mq", "--ip", "10.79.0.2/24"));
    const line = argv.join(" ");
    assert.match(line, / -netdev tap,id=net0,ifname=mq0,script=no,downscript=no,vnet_hdr=on,queues=2 -device virtio-net-device,netdev=net0,mq=on /);
    assert.equal((line.match(/-netdev/g) ?? []).length, 1);
    assert.equal(argv[argv.indexOf("-append") + 1], "torito.accel=kvm torito.ip=10.79.0.2/24 torito.owner.net=0 torito.net.mq=2 --");
    const four = qemuArgs(options("--cpus", "4", "--net", "tap:mq0,vnet_hdr=off,mq", "--ip", "10.79.0.2/24")).join(" ");
    assert.match(four, /-netdev tap,id=net0,ifname=mq0,script=no,downscript=no,queues=4 -device virtio-net-device,netdev=net0,mq=on /);
    assert.match(four, /torito\.net\.mq=4/);
  });

  test("without ,mq nothing changes", () => {
    const line = qemuArgs(options("--cpus", "2", "--net", "tap:a", "--net", "tap:b", "--ip", "10.79.0.2/24,10.79.1.2/24")).join(" ");
    assert.doesNotMatch(line, /queues=|mq=on|torito\.net\.mq/);
    assert.deepEqual(parseNet("tap:a"), { ifname: "a", vnetHdr: true });
    assert.deepEqual(parseNet("tap:a,mq"), { ifname: "a", vnetHdr: true, mq: true });
  });

  for (const [argv, message] of [
    [["--cpus", "2", "--net", "user,mq"], /multiqueue needs a tap .*user network has one queue/],
    [["--cpus", "2", "--net", "tap:a,mq@1", "--ip", "10.0.0.2/24"], /a multiqueue NIC takes no @CORE/],
    [["--cpus", "2", "--net", "tap:a,mq,mq", "--ip", "10.0.0.2/24"], /bad --net 'tap:a,mq,mq'/],
    [["--cpus", "2", "--net", "tap:a,multiqueue", "--ip", "10.0.0.2/24"], /bad --net/],
    [["--cpus", "1", "--net", "tap:a,mq", "--ip", "10.0.0.2/24"], /needs --cpus 2 or more .*use --net tap:a/],
    [["--net", "tap:a,mq", "--ip", "10.0.0.2/24"], /needs --cpus 2 or more/],
    [["--cpus", "2", "--net", "tap:a,mq"], /needs a static --ip/],
    [["--cpus", "2", "--net", "tap:a,mq", "--ip", "10.0.0.2/24,10.0.1.2/24"], /takes one --ip address/],
    [["--cpus", "2", "--net", "tap:a,mq", "--net", "tap:b", "--ip", "10.0.0.2/24"], /use it alone/],
    [["--cpus", "2", "--net", "tap:a,mq", "--port", "8080:80"], /--net and --port/],
  ] as const) {
    test(`refuses ${argv.join(" ")}`, () => {
      assert.throws(() => options(...argv), (e: unknown) => e instanceof UsageError && message.test(e.message));
    });
  }

  test("a tap created without multi_queue is refused before QEMU says something terse", () => {
    const sysfs = mkdtempSync(join(tmpdir(), "torito-mq-sysfs-"));
    try {
      mkdirSync(join(sysfs, "single"));
      writeFileSync(join(sysfs, "single", "tun_flags"), "0x1002\n");
      mkdirSync(join(sysfs, "multi"));
      writeFileSync(join(sysfs, "multi", "tun_flags"), "0x1102\n");
      assert.throws(() => checkMultiqueueTap({ ifname: "single", vnetHdr: true, mq: true }, sysfs),
        (e: unknown) => e instanceof UsageError && /tap single is not multiqueue \(create it with 'ip tuntap add single mode tap multi_queue'\)/.test(e.message));
      checkMultiqueueTap({ ifname: "multi", vnetHdr: true, mq: true }, sysfs);
      checkMultiqueueTap({ ifname: "single", vnetHdr: true }, sysfs); // not mq: not checked
      checkMultiqueueTap({ ifname: "absent", vnetHdr: true, mq: true }, sysfs); // QEMU creates it
    } finally {
      rmSync(sysfs, { recursive: true, force: true });
    }
  });
});

describe("multiqueue steering (kernel/net/multiqueue.ts)", () => {
  test("the ephemeral range is split into disjoint slices, one per core", () => {
    assert.deepEqual(ephemeralRange(0, 2), { first: 49152, count: 8192 });
    assert.deepEqual(ephemeralRange(1, 2), { first: 57344, count: 8192 });
    for (const cores of [2, 3, 4, 16]) {
      for (let core = 0; core < cores; core++) {
        const { first, count } = ephemeralRange(core, cores);
        assert.ok(first + count <= 65536);
        assert.equal(portCore(first, cores), core);
        assert.equal(portCore(first + count - 1, cores), core);
      }
    }
    assert.equal(portCore(80, 2), -1);
    assert.equal(portCore(49151, 2), -1);
    assert.equal(portCore(65535, 3), -1, "the leftover past the last slice belongs to no core");
  });

  const frame = (etherType: number, protocol = 6, destinationPort = 80, fragment = 0): Uint8Array => {
    const f = new Uint8Array(60);
    f[12] = etherType >> 8;
    f[13] = etherType & 0xff;
    f[14] = 0x45;
    f[20] = fragment >> 8;
    f[21] = fragment & 0xff;
    f[23] = protocol;
    f[36] = destinationPort >> 8;
    f[37] = destinationPort & 0xff;
    return f;
  };

  test("ARP goes to every core; TCP and UDP to the core owning the destination port; the rest stays", () => {
    assert.equal(steerFrame(frame(0x0806), 0, 2), STEER_ARP);
    assert.equal(steerFrame(frame(0x0800, 6, 80), 1, 2), STEER_LOCAL, "a listening port: whoever received it");
    assert.equal(steerFrame(frame(0x0800, 6, 57344), 0, 2), 1, "core 1's ephemeral port reached core 0");
    assert.equal(steerFrame(frame(0x0800, 6, 57344), 1, 2), STEER_LOCAL);
    assert.equal(steerFrame(frame(0x0800, 17, 49200), 1, 2), 0, "UDP (a DNS reply) too");
    assert.equal(steerFrame(frame(0x0800, 1, 57344), 0, 2), STEER_LOCAL, "ICMP");
    assert.equal(steerFrame(frame(0x0800, 6, 57344, 0x0010), 0, 2), STEER_LOCAL, "a later fragment has no ports");
    assert.equal(steerFrame(frame(0x0800, 6, 57344, 0x2000), 0, 2), 1, "a first fragment (MF set) has them");
    assert.equal(steerFrame(frame(0x86dd), 0, 2), STEER_LOCAL);
    assert.equal(steerFrame(new Uint8Array(20), 0, 2), STEER_LOCAL);
  });
});
