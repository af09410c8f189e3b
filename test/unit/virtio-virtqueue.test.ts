// The split virtqueue against a simulated device written from the virtio 1.2 spec (§2.7):
// descriptor chains, indirect tables, EVENT_IDX notification suppression, and the
// validation of everything the device writes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { installNativeForTests } from "../../kernel/hw.ts";
import { Virtqueue, VirtqueueError } from "../../kernel/devices/virtio/virtqueue.ts";
import { chacha20Block, ChaChaRng, createCrypto } from "../../kernel/devices/random.ts";
import { deviceOwner, devicesFromCmdline, probeWindow } from "../../kernel/devices/discovery.ts";

// ---- simulated guest memory --------------------------------------------------------------
const regions: { phys: number; buffer: ArrayBuffer }[] = [];
let nextPhys = 0x100000;
installNativeForTests({
  dmaAlloc(size: number, align: number) {
    nextPhys = Math.ceil(nextPhys / Math.max(align, 16)) * Math.max(align, 16);
    const region = { phys: nextPhys, buffer: new ArrayBuffer(size) };
    regions.push(region);
    nextPhys += size;
    return region;
  },
  physAddr: (b: ArrayBuffer) => regions.find((r) => r.buffer === b)?.phys ?? -1,
  fence: () => {},
  now: () => performance.now(),
});

function mem(phys: number, length: number): Uint8Array {
  const r = regions.find((x) => phys >= x.phys && phys + length <= x.phys + x.buffer.byteLength);
  if (!r) throw new Error(`device DMA outside guest memory: 0x${phys.toString(16)}+${length}`);
  return new Uint8Array(r.buffer, phys - r.phys, length);
}
const view = (phys: number, length: number) => { const m = mem(phys, length); return new DataView(m.buffer, m.byteOffset, length); };

interface Segment { phys: number; length: number; writable: boolean }

/** A device side of a split ring, following §2.7.5 - §2.7.8 and §2.7.10. */
class SimDevice {
  lastAvail = 0;
  usedIdx = 0;
  constructor(readonly vq: Virtqueue<number>, readonly eventIdx: boolean) {}
  get n() { return this.vq.size; }
  private avail() { return view(this.vq.addresses.avail, 6 + 2 * this.n); }
  private used() { return view(this.vq.addresses.used, 6 + 8 * this.n); }
  private readChain(head: number): Segment[] {
    const segs: Segment[] = [];
    const desc = (base: number, i: number) => view(base + 16 * i, 16);
    let d = desc(this.vq.addresses.desc, head);
    if (d.getUint16(12, true) & 4) {
      const table = Number(d.getBigUint64(0, true));
      const count = d.getUint32(8, true) / 16;
      for (let i = 0; ; ) {
        const e = desc(table, i);
        segs.push({ phys: Number(e.getBigUint64(0, true)), length: e.getUint32(8, true), writable: (e.getUint16(12, true) & 2) !== 0 });
        if (!(e.getUint16(12, true) & 1)) break;
        i = e.getUint16(14, true);
        assert.ok(i < count);
      }
      return segs;
    }
    for (;;) {
      segs.push({ phys: Number(d.getBigUint64(0, true)), length: d.getUint32(8, true), writable: (d.getUint16(12, true) & 2) !== 0 });
      if (!(d.getUint16(12, true) & 1)) break;
      d = desc(this.vq.addresses.desc, d.getUint16(14, true));
    }
    return segs;
  }
  /** Takes every published request. */
  take(): { head: number; segs: Segment[] }[] {
    const a = this.avail();
    const idx = a.getUint16(2, true);
    const out = [];
    while (this.lastAvail !== idx) {
      const head = a.getUint16(4 + 2 * (this.lastAvail % this.n), true);
      out.push({ head, segs: this.readChain(head) });
      this.lastAvail = (this.lastAvail + 1) & 0xffff;
    }
    if (this.eventIdx) this.used().setUint16(4 + 8 * this.n, this.lastAvail, true); // avail_event
    return out;
  }
  /** Returns a used entry; reports whether the driver asked for an interrupt. */
  complete(id: number, length: number, bump = 1): boolean {
    const u = this.used();
    u.setUint32(4 + 8 * (this.usedIdx % this.n), id, true);
    u.setUint32(8 + 8 * (this.usedIdx % this.n), length, true);
    const old = this.usedIdx;
    this.usedIdx = (this.usedIdx + bump) & 0xffff;
    u.setUint16(2, this.usedIdx, true);
    const a = this.avail();
    if (this.eventIdx) {
      const event = a.getUint16(4 + 2 * this.n, true);
      return ((this.usedIdx - event - 1) & 0xffff) < ((this.usedIdx - old) & 0xffff);
    }
    return (a.getUint16(0, true) & 1) === 0;
  }
}

function setup(size: number, indirect: boolean, eventIdx: boolean) {
  let notifies = 0;
  let broken: VirtqueueError | null = null;
  const vq = new Virtqueue<number>({ name: "sim", size, indirect, eventIdx, notify: () => notifies++, onBroken: (e) => (broken = e) });
  const dev = new SimDevice(vq, eventIdx);
  return { vq, dev, notifies: () => notifies, broken: () => broken };
}

const data = () => {
  const r = regions.length;
  const phys = nextPhys;
  nextPhys += 4096;
  regions.push({ phys, buffer: new ArrayBuffer(4096) });
  return { phys, bytes: new Uint8Array(regions[r]!.buffer) };
};

for (const indirect of [false, true]) {
  for (const eventIdx of [false, true]) {
    test(`requests round-trip through the ring (indirect=${indirect}, event_idx=${eventIdx})`, () => {
      const { vq, dev } = setup(8, indirect, eventIdx);
      const hdr = data(), payload = data(), status = data();
      const completed: [number, number][] = [];
      // More requests than fit at once without indirect descriptors: wrap the ring many times.
      for (let round = 0; round < 50; round++) {
        let submitted = 0;
        for (let i = 0; ; i++) {
          vq.addOut(hdr.phys + 16 * i, 16);
          vq.addIn(payload.phys + 512 * (i % 8), 512);
          vq.addIn(status.phys + i, 1);
          if (!vq.submit(round * 100 + i)) break;
          submitted++;
        }
        assert.equal(submitted, indirect ? 8 : 2);
        vq.kick();
        const reqs = dev.take();
        assert.equal(reqs.length, submitted);
        for (const r of reqs) {
          assert.deepEqual(r.segs.map((s) => [s.length, s.writable]), [[16, false], [512, true], [1, true]]);
          mem(r.segs[2]!.phys, 1)[0] = 0;
          dev.complete(r.head, 513);
        }
        assert.equal(vq.poll((token, len) => completed.push([token, len])), submitted);
        assert.equal(vq.inFlight, 0);
      }
      assert.equal(completed.length, indirect ? 400 : 100);
      assert.deepEqual(completed[1], [1, 513]);
    });
  }
}

test("submitOne: one-segment requests (a frame out, a receive buffer in) mixed with chains, checked like submit's", () => {
  const { vq, dev } = setup(8, false, true);
  const buf = data();
  const completed: [number, number][] = [];
  for (let round = 0; round < 40; round++) {
    // Two chains of two plus four single segments fill the 8 entries; one more does not fit.
    vq.addOut(buf.phys, 10);
    vq.addIn(buf.phys + 10, 100);
    assert.ok(vq.submit(1000 + round));
    for (let i = 0; i < 4; i++) assert.ok(vq.submitOne(buf.phys + 128 * i, 64 + i, i % 2 === 0, round * 10 + i));
    vq.addOut(buf.phys, 1);
    vq.addOut(buf.phys + 1, 1);
    assert.ok(vq.submit(2000 + round));
    assert.equal(vq.submitOne(buf.phys, 1, true, -1), false);
    vq.kick();
    const reqs = dev.take();
    assert.deepEqual(reqs.map((r) => r.segs.map((s) => [s.phys - buf.phys, s.length, s.writable])), [
      [[0, 10, false], [10, 100, true]],
      [[0, 64, true]], [[128, 65, false]], [[256, 66, true]], [[384, 67, false]],
      [[0, 1, false], [1, 1, false]],
    ]);
    for (const r of reqs.reverse()) dev.complete(r.head, r.segs.reduce((n, s) => n + (s.writable ? s.length : 0), 0));
    assert.equal(vq.poll((token, len) => completed.push([token, len])), 6);
    assert.equal(vq.inFlight, 0);
    assert.equal(vq.freeDescriptors, 8);
  }
  assert.deepEqual(completed.slice(0, 6), [[2000, 0], [3, 0], [2, 66], [1, 0], [0, 64], [1000, 100]]);
  // A single segment is held to its writable length like any request.
  const { vq: q2, dev: d2, broken } = setup(4, false, false);
  q2.submitOne(buf.phys, 16, true, 7);
  q2.kick();
  d2.complete(d2.take()[0]!.head, 17);
  assert.equal(q2.poll(() => {}), 0);
  assert.match(String(broken()), /wrote 17 bytes .* hold 16/);
  vq.addOut(buf.phys, 1);
  assert.throws(() => vq.submitOne(buf.phys, 1, false, 0), /staged/);
});

test("EVENT_IDX: the driver notifies only when the device asked, and is not interrupted while polling", () => {
  const { vq, dev, notifies } = setup(16, true, true);
  const buf = data();
  const post = (n: number) => { for (let i = 0; i < n; i++) { vq.addIn(buf.phys, 64); vq.submit(i); } };
  post(2);
  assert.equal(vq.kick(), true);               // device idle at avail_event 0: notify
  post(2);
  assert.equal(vq.kick(), false);              // device has not caught up with what we sent: no notify
  const reqs = dev.take();                     // device catches up, sets avail_event = 4
  assert.equal(reqs.length, 4);
  post(1);
  assert.equal(vq.kick(), true);
  assert.equal(notifies(), 2);
  // Interrupts are suppressed while polling...
  assert.equal(dev.complete(reqs[0]!.head, 0), false);
  assert.equal(vq.poll(() => {}), 1);
  assert.equal(dev.complete(reqs[1]!.head, 0), false);
  // ...and armed before the core halts: the next used buffer interrupts.
  assert.equal(vq.enableInterrupts(), true);   // but one is pending already: don't halt
  assert.equal(vq.poll(() => {}), 1);
  assert.equal(vq.enableInterrupts(), false);
  assert.equal(dev.complete(reqs[2]!.head, 0), true);
});

test("a used index that jumps more than the queue size breaks the queue with a clear error", () => {
  const { vq, dev, broken } = setup(8, true, true);
  const buf = data();
  vq.addIn(buf.phys, 64);
  vq.submit(7);
  vq.kick();
  const [r] = dev.take();
  dev.complete(r!.head, 1, 200);
  assert.equal(vq.poll(() => assert.fail("no completion expected")), 0);
  assert.match(broken()!.message, /^sim: used index jumped from 0 to 200, more than the queue size 8; device disabled$/);
  assert.deepEqual(vq.takeOutstanding(), [7]);
  vq.addIn(buf.phys, 64);
  assert.throws(() => vq.submit(1), VirtqueueError);
});

test("an id never handed out breaks the queue", () => {
  const { vq, dev, broken } = setup(8, false, false);
  const buf = data();
  vq.addIn(buf.phys, 64);
  vq.submit(1);
  vq.kick();
  dev.take();
  dev.complete(5, 1);
  vq.poll(() => {});
  assert.match(broken()!.message, /device returned descriptor id 5, which it was never given/);
});

test("an id returned twice breaks the queue", () => {
  const { vq, dev, broken } = setup(8, false, false);
  const buf = data();
  for (let i = 0; i < 2; i++) { vq.addIn(buf.phys, 64); vq.submit(i); }
  vq.kick();
  const [a] = dev.take();
  dev.complete(a!.head, 1);
  dev.complete(a!.head, 1);
  const done: number[] = [];
  vq.poll((t) => done.push(t));
  assert.deepEqual(done, [0]);
  assert.match(broken()!.message, /never given/);
});

test("a length beyond the writable buffers breaks the queue", () => {
  const { vq, dev, broken } = setup(8, true, true);
  const buf = data();
  vq.addOut(buf.phys, 100);
  vq.addIn(buf.phys + 100, 10);
  vq.submit(1);
  vq.kick();
  const [r] = dev.take();
  dev.complete(r!.head, 11);
  vq.poll(() => {});
  assert.match(broken()!.message, /device wrote 11 bytes into descriptor 0, whose writable buffers hold 10/);
});

test("sizes must be powers of two and segments are bounded", () => {
  assert.throws(() => setup(12, false, false), /not a power of two/);
  const { vq } = setup(8, true, false);
  for (let i = 0; i < 8; i++) vq.addOut(0x100000, 1);
  assert.throws(() => vq.addOut(0x100000, 1), /more than 8 segments/);
  assert.throws(() => vq.submit(1), /without segments/);
});

// ---- discovery ---------------------------------------------------------------------------

test("the virtio_mmio.device= command-line form (QEMU microvm, Firecracker)", () => {
  const { devices, errors } = devicesFromCmdline([
    "torito.accel=kvm", "virtio_mmio.device=512@0xfeb00e00:12", "virtio_mmio.device=4K@0xd0000000:5:3", "virtio_mmio.device=junk",
  ]);
  // highest address first: microvm fills its slots from the top, in command-line order
  assert.deepEqual(devices, [{ base: 0xfeb00e00, size: 512, irq: 12 }, { base: 0xd0000000, size: 4096, irq: 5 }]);
  assert.deepEqual(errors, ["ignoring malformed 'virtio_mmio.device=junk' (expected virtio_mmio.device=<size>@<base>:<irq>)"]);
});

test("probing the microvm window skips empty slots (device id 0) and non-virtio slots", () => {
  const regs = new Map<number, number>([
    [0xfeb00000, 0x74726976], [0xfeb00008, 0],          // slot 0: empty transport
    [0xfeb00c00, 0x74726976], [0xfeb00c08, 4],          // slot 6: rng
    [0xfeb00e00, 0x74726976], [0xfeb00e08, 2],          // slot 7: blk
  ]);
  const found = probeWindow((a) => regs.get(a) ?? 0);
  assert.deepEqual(found, [{ base: 0xfeb00e00, size: 512, irq: 12 }, { base: 0xfeb00c00, size: 512, irq: 11 }]);
});

test("with acpi=on (24 slots) slot i raises GSI 24+i on the second IOAPIC", () => {
  const regs = new Map<number, number>([
    [0xfeb02e00, 0x74726976], [0xfeb02e08, 1],          // slot 23: the first -device
    [0xfeb02c00, 0x74726976], [0xfeb02c08, 1],          // slot 22
  ]);
  assert.deepEqual(probeWindow((a) => regs.get(a) ?? 0, 24),
    [{ base: 0xfeb02e00, size: 512, irq: 47 }, { base: 0xfeb02c00, size: 512, irq: 46 }]);
});

test("device owners: torito.owner.<kind> lists them, the rest go round the cores", () => {
  const none = new Map<string, string>();
  assert.deepEqual([0, 1, 2, 3].map((i) => deviceOwner(none, "net", i, 2)), [0, 1, 0, 1]);
  assert.deepEqual([0, 1].map((i) => deviceOwner(none, "blk", i, 1)), [0, 0]);
  const listed = new Map([["torito.owner.net", "1,1"], ["torito.owner.blk", "0,7"], ["torito.owner.rng", "x"]]);
  assert.deepEqual([0, 1, 2].map((i) => deviceOwner(listed, "net", i, 2)), [1, 1, 0]);
  assert.equal(deviceOwner(listed, "blk", 0, 2), 0);
  assert.match(String(deviceOwner(listed, "blk", 1, 2)), /torito.owner.blk: no core '7' for blk device 1 \(the VM has 2\)/);
  assert.match(String(deviceOwner(listed, "rng", 0, 2)), /no core 'x'/);
});

// ---- entropy -----------------------------------------------------------------------------

test("ChaCha20 block function matches RFC 8439 §2.3.2", () => {
  const key = new Uint32Array(new Uint8Array(32).map((_, i) => i).buffer);
  const nonce = new Uint32Array(new Uint8Array([0, 0, 0, 9, 0, 0, 0, 0x4a, 0, 0, 0, 0]).buffer);
  const out = new Uint32Array(16);
  chacha20Block(key, 1, nonce, out);
  const hex = Buffer.from(out.buffer).toString("hex");
  assert.equal(hex.slice(0, 32), "10f1e7e4d13b5915500fdd1fa32071c4");
  assert.equal(hex.slice(-32), "b5129cd1de164eb9cbd083e8a2503c4e");
});

test("crypto: different seeds give different streams; getRandomValues checks its argument", () => {
  const a = new Uint8Array(64), b = new Uint8Array(64);
  new ChaChaRng(new Uint8Array(32).fill(1)).fill(a);
  new ChaChaRng(new Uint8Array(32).fill(2)).fill(b);
  assert.notDeepEqual(a, b);
  let seeded = 0;
  const c = createCrypto(() => (seeded++, new Uint8Array(32).fill(3)));
  assert.equal(seeded, 0, "seeded lazily");
  const x = c.getRandomValues(new Uint32Array(4));
  const y = c.getRandomValues(new Uint32Array(4));
  assert.notDeepEqual(x, y);
  assert.equal(seeded, 1);
  assert.match(c.randomUUID(), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.throws(() => c.getRandomValues(new Float64Array(2) as unknown as Uint8Array), TypeError);
  assert.throws(() => c.getRandomValues(new Uint8Array(65537)), /QuotaExceededError|limit is 65536/);
});

test("a queue built over ring memory set up elsewhere (multiqueue virtio-net: the owner core registers it, another core drives it)", () => {
  const ring = Virtqueue.allocateRing(16);
  // What the owner registered with the device before DRIVER_OK...
  const registered = ring.addresses;
  assert.equal(registered.desc, ring.phys);
  assert.equal(registered.desc % 4096, 0);
  // ...is exactly where the queue another core builds over the same memory puts its parts.
  const vq = new Virtqueue<number>({ name: "pair 1", size: 16, indirect: true, eventIdx: true, notify: () => {}, ring: { buffer: ring.buffer, phys: ring.phys } });
  assert.deepEqual(vq.addresses, registered);
  const dev = new SimDevice(vq, true);
  const payload = data();
  vq.addIn(payload.phys, 64);
  assert.ok(vq.submit(7));
  vq.kick();
  const [r] = dev.take();
  dev.complete(r!.head, 42);
  const got: [number, number][] = [];
  assert.equal(vq.poll((token, len) => got.push([token, len])), 1);
  assert.deepEqual(got, [[7, 42]]);
  assert.throws(() => new Virtqueue<number>({ name: "too small", size: 64, indirect: false, eventIdx: false, notify: () => {}, ring: { buffer: ring.buffer, phys: ring.phys } }),
    /does not fit 64 entries/);
});
