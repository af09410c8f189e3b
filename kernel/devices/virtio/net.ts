/**
 * virtio-net driver (virtio 1.2 §5.1): one receive/transmit queue pair, implementing the
 * network unit's NetDevice contract (kernel/net/device.ts).
 *
 * Memory. All receive buffers are carved from ONE DMA allocation (`rxBufferSize` bytes
 * each), all transmit buffers from another. Every buffer starts with room for the
 * virtio_net_hdr (§5.1.6.1: 10 bytes, or 12 with VIRTIO_F_VERSION_1 or
 * VIRTIO_NET_F_MRG_RXBUF) directly followed by the Ethernet frame, so one descriptor
 * covers both (legacy devices without VIRTIO_F_ANY_LAYOUT get two descriptors over the
 * same contiguous bytes, §5.1.6.6 legacy interface).
 *
 * Receive (§5.1.6.3, §5.1.6.4). Every buffer stays posted. poll() reads the used ring in
 * memory (never ISR or status registers), hands the handler a view over the receive
 * buffer itself (zero copy; valid only during the call), re-posts the buffer, and kicks
 * the device once for the whole batch. Only a frame the device spread over several
 * buffers (VIRTIO_NET_F_MRG_RXBUF with num_buffers > 1) is copied, into one reassembly
 * buffer. With VIRTIO_NET_F_GUEST_CSUM the handler's second argument says the device
 * validated the checksum (VIRTIO_NET_HDR_F_DATA_VALID); a partially checksummed frame
 * (VIRTIO_NET_HDR_F_NEEDS_CSUM, from a local sender) is completed here and reported
 * verified too.
 *
 * Transmit (§5.1.6.2). txBuffer() hands out the frame area of a free transmit buffer (no
 * copy: the stack writes the frame in place); transmit() publishes it. Publications made
 * in one synchronous stretch are kicked once (at the end of poll(), else from a
 * microtask); completed buffers are reclaimed from the used ring. When every buffer is in
 * flight txBuffer() returns null (back-pressure). transmitWithChecksum() asks the device
 * to fill a TCP/UDP checksum (VIRTIO_NET_F_CSUM), or fills it here when not offered.
 *
 * Interrupts only wake an idle core: the VirtioDriver base keeps them suppressed while it
 * polls (EVENT_IDX) and arms them before the core halts.
 *
 * Multiqueue (§5.1.6.5.5; `torito run --net tap:NAME,mq`): one NIC, one queue pair per
 * core, each core with its own TCP/IP stack. virtio-mmio has one interrupt per device and
 * no MSI, and the spec wants every queue set up before DRIVER_OK, so the owner core (core 0,
 * which the NIC is placed on) initialises the whole device: it negotiates, sets up its own
 * pair 0, allocates the RINGS of pairs 1..N-1 (a few KiB each) and registers them, sets up
 * the control queue, sets DRIVER_OK, sends VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET N and checks
 * the ack, then hands each core its pair's rings (transferred, not copied) with the
 * negotiated features through a kernel message. The using core builds its Virtqueues over
 * those rings and allocates every packet buffer in its own memory; from then on it touches
 * only its rings and its queues' QueueNotify. The owner never waits for another core (a
 * core that never comes up cannot hang the NIC's start); a core's pair simply starts when
 * the message arrives (until then its txBuffer() returns null). The owner's interrupt
 * handler wakes the other cores with an IPI when they may be halted (hw.coreWake); cores
 * that spin poll their own used rings anyway.
 *
 * Everything the device writes is validated: the virtqueue rejects unknown ids and used
 * lengths beyond the buffer (the device is then marked broken with a clear error, the rest
 * of the kernel goes on; txBuffer() returns null from then on); short or runt frames and
 * bad num_buffers are counted and dropped.
 */
import { hw } from "../../hw.ts";
import type { NetDevice } from "../../net/device.ts";
import { checksum } from "../../net/wire/checksum.ts";
import { onKernelMessage, postKernelMessage } from "../../process/cores.ts";
import { claimDevice, sharedDevice } from "../index.ts";
import type { VirtioMmioTransport } from "./mmio.ts";
import { VirtioDriver, DeviceError } from "./driver.ts";
import { Virtqueue } from "./virtqueue.ts";

// Feature bits (§5.1.3; VIRTIO_F_ANY_LAYOUT from §6, legacy only).
const VIRTIO_NET_F_CSUM = 0;
const VIRTIO_NET_F_GUEST_CSUM = 1;
const VIRTIO_NET_F_MTU = 3;
const VIRTIO_NET_F_GUEST_TSO4 = 7;
const VIRTIO_NET_F_MAC = 5;
const VIRTIO_NET_F_HOST_TSO4 = 11;
const VIRTIO_NET_F_MRG_RXBUF = 15;
const VIRTIO_NET_F_STATUS = 16;
const VIRTIO_NET_F_CTRL_VQ = 17;
const VIRTIO_NET_F_MQ = 22;
const VIRTIO_F_ANY_LAYOUT = 27;
const VIRTIO_F_VERSION_1 = 32;

// Config space (§5.1.4): mac[6] @0, status u16 @6, max_virtqueue_pairs u16 @8, mtu u16 @10.
const CONFIG_MAC = 0;
const CONFIG_STATUS = 6;
const CONFIG_MAX_PAIRS = 8;
const CONFIG_MTU = 10;
const VIRTIO_NET_S_LINK_UP = 1;

// virtio_net_hdr (§5.1.6.1).
const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
const VIRTIO_NET_HDR_F_DATA_VALID = 2;
const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
const HDR_GSO_TYPE = 1;
const HDR_HDR_LEN = 2;
const HDR_GSO_SIZE = 4;
const HDR_CSUM_START = 6;
const HDR_CSUM_OFFSET = 8;
const HDR_NUM_BUFFERS = 10;

// Queue indexes (§5.1.2): receiveq1 = 0, transmitq1 = 1, ..., receiveqN = 2(N-1),
// transmitqN = 2(N-1)+1, controlq = 2 * max_virtqueue_pairs (with VIRTIO_NET_F_MQ).
const RECEIVEQ1 = 0;
const TRANSMITQ1 = 1;

// Control queue (§5.1.6.5): class/command header, data, then a one-byte ack.
const VIRTIO_NET_CTRL_MQ = 4;
const VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET = 0;
const VIRTIO_NET_OK = 0;
/** Kernel message topic on which the owner hands a core its queue pair. */
const MQ_TOPIC = "virtio-net-mq";

const ETHERNET_HEADER = 14;
/** Largest Ethernet frame without FCS the buffers are sized for (1500 + 14 + a VLAN tag). */
const MAX_FRAME = 1518;
/** Largest frame a multi-buffer receive may reassemble to (then counted and dropped): a 64 KiB IPv4 packet (GUEST_TSO4) in a VLAN-tagged frame. */
const MAX_MERGED_FRAME = 65535 + 18;
/** Receive buffers posted during start-up; the rest follow in idle passes (deferredStart). Enough
 *  for a 64 KiB GUEST_TSO4 segment in 2 KiB buffers. */
const RX_POSTED_AT_START = 64;
/** Largest frame handed to the device for TCP segmentation (HOST_TSO4): its IPv4 packet stays
 *  under the 64 KiB limit of the total-length field. */
const LARGE_FRAME = 65536;
/** Transmit buffers of LARGE_FRAME bytes, allocated (one DMA block, 256 KiB) on the first large
 *  send: a connection's send buffer (64 KiB) has at most one in flight at a time. */
const LARGE_BUFFERS = 4;

/** Sizing of a virtio-net device's buffers (all optional). */
export interface NetDeviceOptions {
  /** Receive buffers kept posted (rounded down to the queue size; default 256). */
  rxBuffers?: number;
  /** Bytes per receive buffer, header included (default 2048; below 1530 needs VIRTIO_NET_F_MRG_RXBUF). */
  rxBufferSize?: number;
  /** Transmit buffers (default 256). */
  txBuffers?: number;
  /** Multiqueue: queue pairs to enable, one per core 0..N-1 (owner only; default 1). */
  queuePairs?: number;
}

/** What the owner core hands the core that drives queue pair `pair` of a multiqueue NIC. */
export interface QueuePairSetup {
  pair: number;
  /** Negotiated features (hex). */
  features: string;
  mac: number[];
  mtu: number;
  link: boolean;
  maxPairs: number;
  /** Whether the owner takes the device's interrupt (and so can wake this pair's core). */
  wakeable: boolean;
  /** Ring memory already registered with the device (transferred), and the queue sizes. */
  rxRing: ArrayBuffer;
  rxSize: number;
  txRing: ArrayBuffer;
  txSize: number;
}

/** What the device does for the stack (negotiated features). */
export interface NetOffload {
  /** VIRTIO_NET_F_CSUM: transmitWithChecksum() leaves the TCP/UDP checksum to the device. */
  readonly txChecksum: boolean;
  /** VIRTIO_NET_F_GUEST_CSUM: the device may report received checksums as verified. */
  readonly rxChecksum: boolean;
  /** VIRTIO_NET_F_MRG_RXBUF: frames larger than a receive buffer arrive in several. */
  readonly mergeableRxBuffers: boolean;
  /** VIRTIO_NET_F_GUEST_TSO4: received TCP segments may exceed the MTU (up to a 64 KiB IPv4 packet). */
  readonly rxLargeSegments: boolean;
  /** VIRTIO_NET_F_HOST_TSO4: transmitSegmented() hands the device TCP segments of up to 64 KiB to cut. */
  readonly txLargeSegments: boolean;
  /** VIRTIO_NET_F_MQ: the device has `maxQueuePairs` pairs. */
  readonly multiqueue: boolean;
  readonly maxQueuePairs: number;
  /** Queue pairs enabled (VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET; 1 without multiqueue). */
  readonly queuePairs: number;
}

/** Counters of one virtio-net device. */
export interface NetCounters {
  rxFrames: number;
  rxBytes: number;
  /** Frames dropped on receive: too large to reassemble, or no handler installed. */
  rxDrops: number;
  /** Malformed receives: used length shorter than the header, runt frames, bad num_buffers or csum fields. */
  rxErrors: number;
  /** Frames that arrived in several buffers and were reassembled (copied). */
  rxMerged: number;
  /** Frames that arrived with the checksum verified by the device. */
  rxChecksumVerified: number;
  txFrames: number;
  txBytes: number;
  /** txBuffer() calls that returned null (every buffer in flight, or the device broken). */
  txFull: number;
  /** Frames transmitted with the checksum left to the device. */
  txChecksumOffloaded: number;
  /** Of txFrames, the large TCP segments left to the device to cut (HOST_TSO4). */
  txSegmented: number;
}

/** Receive handler: the frame (a view, valid only during the call) and whether its TCP/UDP checksum is already verified. */
export type NetReceiveHandler = (frame: Uint8Array, checksumVerified: boolean) => void;

/** The virtio-net driver for one device (one queue pair). */
export class VirtioNet extends VirtioDriver implements NetDevice {
  readonly mac: Uint8Array;
  readonly mtu: number;
  readonly offload: NetOffload;
  /** Bytes of virtio_net_hdr before each frame (10 or 12). */
  readonly headerLength: number;
  /** NetDevice.largeSend: LARGE_FRAME with HOST_TSO4, else 0 (also once the large buffers could not be allocated). */
  largeSend: number;
  readonly counters: NetCounters = {
    rxFrames: 0, rxBytes: 0, rxDrops: 0, rxErrors: 0, rxMerged: 0, rxChecksumVerified: 0,
    txFrames: 0, txBytes: 0, txFull: 0, txChecksumOffloaded: 0, txSegmented: 0,
  };
  /** Called when the device reports a configuration change (e.g. the link went up or down). */
  onLinkChange: ((up: boolean) => void) | null = null;
  /** The queue pair this driver uses (0 on the owner; receiveq = 2 * pair). */
  readonly pair: number;

  private readonly rxq: Virtqueue<number>;
  private readonly txq: Virtqueue<number>;
  private readonly splitHeader: boolean;
  private readonly hasStatus: boolean;
  private link = true;
  // Receive side: one DMA block of rxCount buffers of rxStride bytes.
  private readonly rxCount: number;
  /** Receive buffers posted so far: slots [0, rxPosted); the rest wait for deferredStart(). */
  private rxPosted = 0;
  private readonly rxStride: number;
  private readonly rxMemory: ArrayBuffer;
  private readonly rxBytes: Uint8Array;
  private readonly rxPhys: number;
  /** Last frame view handed out per buffer, reused when the next frame has the same length. */
  private readonly rxViews: (Uint8Array | undefined)[];
  /** Their lengths (-1: none), so that the check reads no typed-array length getter. */
  private readonly rxViewLengths: Int32Array;
  private handler: NetReceiveHandler | null = null;
  private polling = false;
  private received = 0;
  // Multi-buffer receive state (VIRTIO_NET_F_MRG_RXBUF).
  private mergeBuffer: Uint8Array | null = null;
  private mergeRemaining = 0;
  private mergeLength = 0;
  private mergeFlags = 0;
  private mergeCsumStart = 0;
  private mergeCsumOffset = 0;
  private mergeDrop = false;
  // Transmit side: one DMA block of txCount buffers of txStride bytes; a stack of free ones.
  private readonly txCount: number;
  private readonly txStride: number;
  private readonly txMemory: ArrayBuffer;
  private readonly txBytes: Uint8Array;
  private readonly txPhys: number;
  private readonly txFrames: (Uint8Array | undefined)[];
  private readonly txFree: Uint16Array;
  private txFreeCount: number;
  private readonly txInFlight: Uint8Array;
  private txUnkicked = false;
  private kickQueued = false;
  private readonly kickFn = (): void => {
    this.kickQueued = false;
    if (this.txUnkicked) {
      this.txUnkicked = false;
      this.txq.kick();
    }
  };
  /** Bound rather than an arrow function: no interpreter frame of its own per frame received. */
  private readonly rxUsedFn = this.receive.bind(this);
  // Large transmit buffers (HOST_TSO4): slots txCount + i of the transmit queue's tokens.
  private largeMemory: ArrayBuffer | null = null;
  private largeBytes: Uint8Array | null = null;
  private largePhys = 0;
  private largeStride = 0;
  private readonly largeFrames: Uint8Array[] = [];
  private readonly largeFree: number[] = [];
  private readonly txUsedFn = (slot: number): void => {
    if (slot >= this.txCount) {
      this.largeFree.push(slot - this.txCount);
      return;
    }
    this.txInFlight[slot] = 0;
    this.txFree[this.txFreeCount++] = slot;
  };

  /**
   * Starts the device (the owner core), or with `setup` drives the queue pair the owner
   * handed this core (a remote pair: no register but QueueNotify is touched).
   */
  constructor(transport: VirtioMmioTransport, options: NetDeviceOptions = {}, setup?: QueuePairSetup) {
    super(transport, "net", setup !== undefined);
    this.pair = setup?.pair ?? 0;
    const t = transport;
    if (setup === undefined) {
      // §5.1.5 device initialization; checksum offload, mergeable buffers and MQ when offered.
      // GUEST_TSO4 (large TCP segments coalesced by the host, up to 64 KiB: one pass through
      // the stack instead of ~45) only with GUEST_CSUM (§5.1.3.1) and mergeable buffers (the
      // segment spans several receive buffers, reassembled here); GUEST_TSO6/ECN/UFO never.
      this.negotiate([
        VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_MTU, VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_MQ,
        VIRTIO_F_ANY_LAYOUT, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_HOST_TSO4,
      ], [[VIRTIO_NET_F_GUEST_TSO4, [VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_MRG_RXBUF]], [VIRTIO_NET_F_HOST_TSO4, [VIRTIO_NET_F_CSUM]]]);
    } else {
      t.features = BigInt(`0x${setup.features}`);
      this.remoteWakeable = setup.wakeable;
    }
    const mergeable = t.has(VIRTIO_NET_F_MRG_RXBUF);
    this.headerLength = t.has(VIRTIO_F_VERSION_1) || mergeable ? 12 : 10;
    this.splitHeader = t.legacy && !t.has(VIRTIO_F_ANY_LAYOUT);
    this.hasStatus = t.has(VIRTIO_NET_F_STATUS);
    const multiqueue = t.has(VIRTIO_NET_F_MQ) && t.has(VIRTIO_NET_F_CTRL_VQ);
    const config = setup !== undefined
      ? { mac: new Uint8Array(setup.mac), status: setup.link ? VIRTIO_NET_S_LINK_UP : 0, pairs: setup.maxPairs, mtu: setup.mtu }
      : t.readConfig((c) => {
      const mac = new Uint8Array(6);
      let status = -1;
      if (t.legacy && t.has(VIRTIO_NET_F_MAC) && this.hasStatus) {
        // A legacy device takes config reads of any width (the byte-per-field rule is the
        // modern interface's, §4.2.2.2): the MAC and the status in two reads, not seven
        // (each a VM exit, on the boot path). Legacy config space is guest-endian, and with
        // VIRTIO_NET_F_STATUS it is at least 8 bytes long, so the second read stays inside.
        const low = c.u32(CONFIG_MAC), high = c.u32(CONFIG_MAC + 4);
        mac.set([low & 0xff, (low >>> 8) & 0xff, (low >>> 16) & 0xff, low >>> 24, high & 0xff, (high >>> 8) & 0xff]);
        status = high >>> 16;
      } else if (t.has(VIRTIO_NET_F_MAC)) {
        for (let i = 0; i < 6; i++) mac[i] = c.u8(CONFIG_MAC + i);
      }
      return {
        mac,
        status: !this.hasStatus ? VIRTIO_NET_S_LINK_UP : status >= 0 ? status : c.u16(CONFIG_STATUS),
        pairs: multiqueue ? c.u16(CONFIG_MAX_PAIRS) : 1,
        mtu: t.has(VIRTIO_NET_F_MTU) ? c.u16(CONFIG_MTU) : 1500,
      };
    });
    this.mac = t.has(VIRTIO_NET_F_MAC) ? config.mac : randomLocalMac();
    this.link = (config.status & VIRTIO_NET_S_LINK_UP) !== 0;
    // §5.1.4.1: the driver must not send packets larger than `mtu`; our buffers cap it at 1500.
    this.mtu = Math.max(68, Math.min(config.mtu, 1500));
    this.offload = {
      txChecksum: t.has(VIRTIO_NET_F_CSUM),
      rxChecksum: t.has(VIRTIO_NET_F_GUEST_CSUM),
      mergeableRxBuffers: mergeable,
      rxLargeSegments: t.has(VIRTIO_NET_F_GUEST_TSO4),
      txLargeSegments: t.has(VIRTIO_NET_F_HOST_TSO4) && t.has(VIRTIO_NET_F_CSUM),
      multiqueue,
      maxQueuePairs: Math.max(1, config.pairs),
      queuePairs: setup !== undefined ? 1 : Math.max(1, options.queuePairs ?? 1),
    };
    const pairs = this.offload.queuePairs;
    if (pairs > 1 && !multiqueue) {
      throw new DeviceError(`${this.name}: ${pairs} queue pairs wanted, but the device offers no multiqueue (VIRTIO_NET_F_MQ with VIRTIO_NET_F_CTRL_VQ; QEMU: a tap with queues=N and mq=on)`);
    }
    if (pairs > this.offload.maxQueuePairs) {
      throw new DeviceError(`${this.name}: ${pairs} queue pairs wanted, but the device has ${this.offload.maxQueuePairs}`);
    }

    const segments = this.splitHeader ? 2 : 1;
    if (setup !== undefined) {
      const ring = (buffer: ArrayBuffer, size: number) => ({ buffer, phys: hw.physAddr(buffer), size });
      this.rxq = this.createQueue(2 * setup.pair, setup.rxSize, segments, ring(setup.rxRing, setup.rxSize));
      this.txq = this.createQueue(2 * setup.pair + 1, setup.txSize, segments, ring(setup.txRing, setup.txSize));
    } else {
      this.rxq = this.createQueue(RECEIVEQ1, options.rxBuffers ?? 256, segments);
      this.txq = this.createQueue(TRANSMITQ1, options.txBuffers ?? 256, segments);
    }
    // The other cores' queue pairs: rings registered now (before DRIVER_OK), handed over below.
    // They halt only if this core takes the device's interrupt to wake them: route it now.
    if (pairs > 1) this.routeInterrupt();
    const handOver: QueuePairSetup[] = [];
    for (let pair = 1; pair < pairs; pair++) {
      const rxSize = this.queueSize(2 * pair, options.rxBuffers ?? 256);
      const txSize = this.queueSize(2 * pair + 1, options.txBuffers ?? 256);
      const rxRing = Virtqueue.allocateRing(rxSize);
      const txRing = Virtqueue.allocateRing(txSize);
      t.setupQueue(2 * pair, rxSize, rxRing.addresses);
      t.setupQueue(2 * pair + 1, txSize, txRing.addresses);
      handOver.push({
        pair, features: t.features.toString(16), mac: [...config.mac], mtu: config.mtu, link: this.link,
        maxPairs: this.offload.maxQueuePairs, wakeable: this.interruptLine > 0, rxRing: rxRing.buffer, rxSize, txRing: txRing.buffer, txSize,
      });
    }
    const ctrlq = pairs > 1 ? this.createQueue(2 * this.offload.maxQueuePairs, 8, 4) : null;
    // Without indirect descriptors a split buffer takes two ring entries.
    const perRing = (vq: Virtqueue<number>) => (segments === 2 && !vq.indirect ? vq.size >> 1 : vq.size);

    this.rxStride = options.rxBufferSize ?? 2048;
    const minRx = mergeable ? this.headerLength + 64 : this.headerLength + MAX_FRAME;
    if (!Number.isInteger(this.rxStride) || this.rxStride < minRx || this.rxStride > 65536) {
      throw new DeviceError(`${this.name}: rxBufferSize ${this.rxStride} must be ${minRx}..65536${mergeable ? "" : " (the device lacks VIRTIO_NET_F_MRG_RXBUF)"}`);
    }
    this.rxCount = perRing(this.rxq);
    const rx = hw.dmaAlloc(this.rxCount * this.rxStride, 4096);
    this.rxMemory = rx.buffer;
    this.rxBytes = new Uint8Array(rx.buffer);
    this.rxPhys = rx.phys;
    this.rxViews = new Array<Uint8Array | undefined>(this.rxCount).fill(undefined);
    this.rxViewLengths = new Int32Array(this.rxCount).fill(-1);

    this.txStride = (this.headerLength + MAX_FRAME + 63) & ~63;
    // The large buffers take ring entries too: the small ones leave them room.
    this.largeSend = this.offload.txLargeSegments && perRing(this.txq) > 2 * LARGE_BUFFERS ? LARGE_FRAME : 0;
    this.txCount = perRing(this.txq) - (this.largeSend > 0 ? LARGE_BUFFERS : 0);
    const tx = hw.dmaAlloc(this.txCount * this.txStride, 4096);
    this.txMemory = tx.buffer;
    this.txBytes = new Uint8Array(tx.buffer);
    this.txPhys = tx.phys;
    // A slot's view is made when txBuffer() first hands it out (not 256 at start-up).
    this.txFrames = new Array<Uint8Array | undefined>(this.txCount).fill(undefined);
    this.txFree = new Uint16Array(this.txCount);
    this.txInFlight = new Uint8Array(this.txCount);
    for (let i = 0; i < this.txCount; i++) this.txFree[i] = this.txCount - 1 - i;
    this.txFreeCount = this.txCount;

    // §3.1.1 step 8, then §5.1.5: fill the receive queue. (Multiqueue stays at one pair until
    // VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, §5.1.6.5.5.) A remote pair's device is live already.
    if (setup === undefined) t.driverOk();
    // The first RX_POSTED_AT_START buffers now, the rest in the first idle passes
    // (deferredStart): ~1 µs of JavaScript each, and the boot path is every server's.
    this.rxPosted = Math.min(this.rxCount, RX_POSTED_AT_START);
    for (let slot = 0; slot < this.rxPosted; slot++) this.post(slot);
    this.rxq.kick();
    if (ctrlq !== null) {
      this.setQueuePairs(ctrlq, pairs);
      // The device's one interrupt comes here: the supervisor wakes the other pairs' cores at
      // once (onInterruptTaken does it again from the event loop, as a fallback).
      if (this.interruptLine > 0) hw.irqForward(this.interruptLine, ((1 << pairs) - 1) & ~1);
      for (const pairSetup of handOver) {
        try {
          postKernelMessage(pairSetup.pair, MQ_TOPIC, pairSetup, [pairSetup.rxRing, pairSetup.txRing]);
        } catch (e) {
          hw.write(`torito: ${this.name}: cannot hand queue pair ${pairSetup.pair} to core ${pairSetup.pair}: ${(e as Error).message}\n`);
        }
      }
    }
  }

  /** §5.1.6.5.5: enables `pairs` queue pairs; throws unless the device acknowledges. */
  private setQueuePairs(ctrlq: Virtqueue<number>, pairs: number): void {
    const command = hw.dmaAlloc(16, 16);
    const b = new Uint8Array(command.buffer);
    b[0] = VIRTIO_NET_CTRL_MQ;
    b[1] = VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET;
    b[2] = pairs & 0xff; // virtqueue_pairs, le16
    b[3] = pairs >> 8;
    b[4] = 0xff; // ack, written by the device
    ctrlq.addOut(command.phys, 2);
    ctrlq.addOut(command.phys + 2, 2);
    ctrlq.addIn(command.phys + 4, 1);
    ctrlq.submit(0);
    ctrlq.kick();
    // QEMU answers during the notify; another VMM may take a moment.
    let done = false;
    const deadline = hw.now() + 1000;
    while (!done && this.broken === null && hw.now() < deadline) ctrlq.poll(() => (done = true));
    if (!done) throw new DeviceError(`${this.name}: no answer to VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET ${pairs} within 1 s`);
    if (b[4] !== VIRTIO_NET_OK) throw new DeviceError(`${this.name}: the device refused VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET ${pairs} (ack ${b[4]})`);
    (this.offload as { queuePairs: number }).queuePairs = pairs;
  }

  /** The owner wakes the cores of the other queue pairs: the device's one interrupt is its
   *  (the supervisor already did when irqForward is in place; then nobody sleeps any more). */
  protected override onInterruptTaken(): void {
    for (let core = 1; core < this.offload.queuePairs; core++) hw.coreWake(core);
  }

  /** Whether the link is up (VIRTIO_NET_S_LINK_UP; always true without VIRTIO_NET_F_STATUS). Refreshed on config-change interrupts and by refreshLink(). */
  get linkUp(): boolean {
    return this.link;
  }

  /** Re-reads the link status from config space (one register read, ~30 µs: not for hot paths). */
  refreshLink(): boolean {
    if (this.hasStatus && this.broken === null) {
      this.link = (this.transport.readConfig((c) => c.u16(CONFIG_STATUS)) & VIRTIO_NET_S_LINK_UP) !== 0;
    }
    return this.link;
  }

  /** Receive buffers posted and transmit buffers, for diagnostics. */
  get bufferCounts(): { rx: number; rxBufferSize: number; tx: number; txFree: number } {
    return { rx: this.rxPosted, rxBufferSize: this.rxStride, tx: this.txCount, txFree: this.txFreeCount };
  }

  /** Posts the receive buffers start-up left for later, RX_POSTED_AT_START per idle pass (or poll()). */
  protected override deferredStart(): boolean {
    const end = Math.min(this.rxCount, this.rxPosted + RX_POSTED_AT_START);
    if (this.rxPosted === end) return false;
    for (let slot = this.rxPosted; slot < end; slot++) this.post(slot);
    this.rxPosted = end;
    this.rxq.kick();
    return true;
  }

  /**
   * Installs the receive handler (null removes it). While one is installed the driver polls
   * from the scheduler on its own (and keeps the VM alive); the network unit may also call
   * poll() itself.
   */
  setReceiveHandler(handler: NetReceiveHandler | null): void {
    this.handler = handler;
    if (handler !== null) this.startPolling();
  }

  txBuffer(length: number): Uint8Array | null {
    if (!(length >= 0 && length <= this.txStride - this.headerLength)) {
      if (length > 0 && length <= this.largeSend) return this.largeBuffer();
      throw new RangeError(`${this.name}: a ${length}-byte frame does not fit a transmit buffer (${this.txStride - this.headerLength} bytes)`);
    }
    if (this.txFreeCount === 0 && this.broken === null) this.txq.poll(this.txUsedFn);
    if (this.txFreeCount === 0 || this.broken !== null) {
      this.counters.txFull++;
      return null;
    }
    const slot = this.txFree[this.txFreeCount - 1]!;
    return this.txFrames[slot] ?? this.txView(slot);
  }

  /** A free large buffer (allocating them on first use), or null when all are in flight. */
  private largeBuffer(): Uint8Array | null {
    if (this.broken !== null) return null;
    if (this.largeMemory === null) {
      this.largeStride = (this.headerLength + LARGE_FRAME + 63) & ~63;
      let block: { buffer: ArrayBuffer; phys: number };
      try {
        block = hw.dmaAlloc(LARGE_BUFFERS * this.largeStride, 4096);
      } catch {
        // A heap too small for them: the stack goes on with ordinary segments (largeSend 0).
        this.largeSend = 0;
        this.counters.txFull++;
        return null;
      }
      this.largeMemory = block.buffer;
      this.largeBytes = new Uint8Array(block.buffer);
      this.largePhys = block.phys;
      for (let i = 0; i < LARGE_BUFFERS; i++) {
        this.largeFrames.push(new Uint8Array(block.buffer, i * this.largeStride + this.headerLength, LARGE_FRAME));
        this.largeFree.push(LARGE_BUFFERS - 1 - i);
      }
    }
    if (this.largeFree.length === 0) this.txq.poll(this.txUsedFn);
    if (this.largeFree.length === 0) {
      this.counters.txFull++;
      return null;
    }
    return this.largeFrames[this.largeFree[this.largeFree.length - 1]!]!;
  }

  /** NetDevice.transmitSegmented (HOST_TSO4, §5.1.6.2): one GSO_TCPV4 frame in a large buffer. */
  transmitSegmented(buffer: Uint8Array, length: number, headerLength: number, segmentSize: number): void {
    const frames = this.largeFrames;
    let k = this.largeFree.length - 1;
    while (k >= 0 && frames[this.largeFree[k]!] !== buffer) k--;
    if (k < 0) throw new RangeError(`${this.name}: transmitSegmented() of a buffer that txBuffer() did not hand out as a large one, or that is already in flight`);
    const csumStart = ETHERNET_HEADER + 20;
    if (!(headerLength >= csumStart + 20 && headerLength <= length && length <= LARGE_FRAME && segmentSize > 0 && segmentSize < 65536)) {
      throw new RangeError(`${this.name}: segmented transmit of ${length} bytes with ${headerLength} bytes of headers and segments of ${segmentSize} is out of range`);
    }
    if (this.broken !== null) return;
    const index = this.largeFree[k]!;
    this.largeFree[k] = this.largeFree[this.largeFree.length - 1]!;
    this.largeFree.pop();
    const at = index * this.largeStride;
    const h = this.largeBytes!;
    h[at] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    h[at + HDR_GSO_TYPE] = VIRTIO_NET_HDR_GSO_TCPV4;
    h[at + HDR_HDR_LEN] = headerLength & 0xff;
    h[at + HDR_HDR_LEN + 1] = headerLength >> 8;
    h[at + HDR_GSO_SIZE] = segmentSize & 0xff;
    h[at + HDR_GSO_SIZE + 1] = segmentSize >> 8;
    h[at + HDR_CSUM_START] = csumStart;
    h[at + HDR_CSUM_START + 1] = 0;
    h[at + HDR_CSUM_OFFSET] = 16; // the TCP checksum field
    h[at + HDR_CSUM_OFFSET + 1] = 0;
    // Cannot fail: the small buffers left LARGE_BUFFERS ring entries for these.
    this.enqueue(this.largePhys + at, length, this.txCount + index);
    this.counters.txSegmented++;
    this.counters.txChecksumOffloaded++;
  }

  private txView(slot: number): Uint8Array {
    const view = new Uint8Array(this.txMemory, slot * this.txStride + this.headerLength, this.txStride - this.headerLength);
    this.txFrames[slot] = view;
    return view;
  }

  transmit(buffer: Uint8Array, length: number): void {
    this.send(buffer, length, 0, 0, 0);
  }

  /**
   * Sends a frame whose TCP or UDP checksum is still to be computed: the checksum covers
   * frame bytes [checksumStart, length) and goes at checksumStart + checksumOffset, where
   * the caller has stored the pseudo-header sum, folded to 16 bits, NOT complemented
   * (§5.1.6.2). With VIRTIO_NET_F_CSUM the device fills it in; otherwise it is done here.
   */
  transmitWithChecksum(buffer: Uint8Array, length: number, checksumStart: number, checksumOffset: number): void {
    if (!(checksumStart >= ETHERNET_HEADER && checksumStart + checksumOffset + 2 <= length)) {
      throw new RangeError(`${this.name}: checksum at ${checksumStart}+${checksumOffset} is outside the ${length}-byte frame`);
    }
    if (this.offload.txChecksum) {
      this.send(buffer, length, VIRTIO_NET_HDR_F_NEEDS_CSUM, checksumStart, checksumOffset);
      this.counters.txChecksumOffloaded++;
    } else {
      completeChecksum(buffer, length, checksumStart, checksumOffset);
      this.send(buffer, length, 0, 0, 0);
    }
  }

  private send(buffer: Uint8Array, length: number, flags: number, csumStart: number, csumOffset: number): void {
    // Almost always the buffer txBuffer() just handed out, the top of the free stack: known by
    // identity, without the general check's typed-array getters and native call per frame.
    let i = this.txFreeCount - 1;
    let slot = i >= 0 ? this.txFree[i]! : -1;
    if (slot < 0 || this.txFrames[slot] !== buffer) {
      slot = (buffer.byteOffset - this.headerLength) / this.txStride;
      if (buffer.buffer !== this.txMemory || !Number.isInteger(slot) || slot < 0 || slot >= this.txCount || this.txInFlight[slot] !== 0) {
        throw new RangeError(`${this.name}: transmit() of a buffer that txBuffer() did not hand out, or that is already in flight`);
      }
      while (i >= 0 && this.txFree[i] !== slot) i--; // free, so on the stack
    }
    if (!(length > 0 && length <= this.txStride - this.headerLength)) {
      throw new RangeError(`${this.name}: transmit length ${length} out of range`);
    }
    if (this.broken !== null) return; // frames to a dead device are lost, like on a dead wire
    const at = slot * this.txStride;
    const h = this.txBytes;
    h[at] = flags; // gso_type, hdr_len, gso_size stay 0 (GSO_NONE); num_buffers unused on transmit
    if (flags !== 0) {
      h[at + HDR_CSUM_START] = csumStart & 0xff;
      h[at + HDR_CSUM_START + 1] = csumStart >> 8;
      h[at + HDR_CSUM_OFFSET] = csumOffset & 0xff;
      h[at + HDR_CSUM_OFFSET + 1] = csumOffset >> 8;
    }
    // Take the slot off the free stack.
    this.txFree[i] = this.txFree[this.txFreeCount - 1]!;
    this.txFreeCount--;
    this.txInFlight[slot] = 1;
    // Cannot fail: there are no more buffers than ring entries.
    this.enqueue(this.txPhys + at, length, slot);
  }

  /** Puts the buffer at `phys` (virtio_net_hdr, then `length` frame bytes) on the transmit
   *  queue as request `token`, to be kicked at the end of this stretch of JavaScript. */
  private enqueue(phys: number, length: number, token: number): void {
    const q = this.txq;
    if (this.splitHeader) {
      q.addOut(phys, this.headerLength);
      q.addOut(phys + this.headerLength, length);
      q.submit(token);
    } else {
      q.submitOne(phys, this.headerLength + length, false, token);
    }
    this.counters.txFrames++;
    this.counters.txBytes += length;
    this.txUnkicked = true;
    if (!this.polling && !this.kickQueued) {
      this.kickQueued = true;
      queueMicrotask(this.kickFn);
    }
    this.startPolling();
  }

  /** Publishes transmitted frames to the device now instead of at the end of this stretch of JavaScript. */
  flush(): void {
    this.kickFn();
  }

  /**
   * Delivers received frames to the handler, re-posts their buffers and kicks once,
   * reclaims transmitted buffers and kicks pending transmissions. Returns frames delivered.
   */
  poll(): number {
    if (this.polling || this.broken !== null) return 0;
    this.polling = true;
    this.received = 0;
    try {
      this.rxq.poll(this.rxUsedFn);
      this.txq.poll(this.txUsedFn);
    } finally {
      this.polling = false;
      if (this.broken === null) {
        // An app that polls by itself, never idle in the scheduler, gets the rest too.
        if (this.rxPosted < this.rxCount) this.deferredStart();
        this.rxq.kick(); // no-op unless buffers were re-posted
        if (this.txUnkicked) {
          this.txUnkicked = false;
          this.txq.kick();
        }
      }
    }
    return this.received;
  }

  /** Posts receive buffer `slot` (published by the next kick). */
  private post(slot: number): void {
    const phys = this.rxPhys + slot * this.rxStride;
    const q = this.rxq;
    if (this.splitHeader) {
      q.addIn(phys, this.headerLength);
      q.addIn(phys + this.headerLength, this.rxStride - this.headerLength);
      q.submit(slot);
    } else {
      q.submitOne(phys, this.rxStride, true, slot);
    }
  }

  /** One used receive buffer (§5.1.6.4); its length was checked against the buffer by the virtqueue. */
  private receive(slot: number, length: number): void {
    const b = this.rxBytes;
    const at = slot * this.rxStride;
    if (this.mergeRemaining > 0) {
      // §5.1.6.4.2: a continuation buffer holds frame bytes only, no header.
      this.mergeMore(at, length);
      this.post(slot);
      return;
    }
    const hl = this.headerLength;
    if (length < hl + ETHERNET_HEADER) {
      this.counters.rxErrors++; // shorter than a header plus an Ethernet header
      this.post(slot);
      return;
    }
    const flags = b[at]!;
    if (this.offload.mergeableRxBuffers) {
      const buffers = b[at + HDR_NUM_BUFFERS]! | (b[at + HDR_NUM_BUFFERS + 1]! << 8);
      if (buffers !== 1) {
        this.mergeStart(at, length, flags, buffers);
        this.post(slot);
        return;
      }
    }
    const frameLength = length - hl;
    let view = this.rxViews[slot];
    if (view === undefined || this.rxViewLengths[slot] !== frameLength) {
      view = new Uint8Array(this.rxMemory, at + hl, frameLength);
      this.rxViews[slot] = view;
      this.rxViewLengths[slot] = frameLength;
    }
    try {
      this.deliver(view, flags, b[at + HDR_CSUM_START]! | (b[at + HDR_CSUM_START + 1]! << 8), b[at + HDR_CSUM_OFFSET]! | (b[at + HDR_CSUM_OFFSET + 1]! << 8));
    } finally {
      this.post(slot);
    }
  }

  private deliver(frame: Uint8Array, flags: number, csumStart: number, csumOffset: number): void {
    const c = this.counters;
    const handler = this.handler;
    if (handler === null) {
      c.rxDrops++;
      return;
    }
    let verified = false;
    if (flags !== 0 && this.offload.rxChecksum) {
      if ((flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0) {
        // §5.1.6.4: the checksum field holds only the pseudo-header sum; finish it.
        if (!(csumStart >= ETHERNET_HEADER && csumStart + csumOffset + 2 <= frame.length)) {
          c.rxErrors++;
          return;
        }
        completeChecksum(frame, frame.length, csumStart, csumOffset);
        verified = true;
      } else {
        verified = (flags & VIRTIO_NET_HDR_F_DATA_VALID) !== 0;
      }
      if (verified) c.rxChecksumVerified++;
    }
    c.rxFrames++;
    c.rxBytes += frame.length;
    this.received++;
    handler(frame, verified);
  }

  private mergeStart(at: number, length: number, flags: number, buffers: number): void {
    if (buffers === 0 || buffers > this.rxCount) {
      if (buffers > this.rxCount) this.fail(`device says a frame spans ${buffers} buffers, but only ${this.rxCount} are posted`);
      else this.counters.rxErrors++;
      return;
    }
    const b = this.rxBytes;
    this.mergeBuffer ??= new Uint8Array(MAX_MERGED_FRAME);
    this.mergeRemaining = buffers - 1;
    this.mergeFlags = flags;
    this.mergeCsumStart = b[at + HDR_CSUM_START]! | (b[at + HDR_CSUM_START + 1]! << 8);
    this.mergeCsumOffset = b[at + HDR_CSUM_OFFSET]! | (b[at + HDR_CSUM_OFFSET + 1]! << 8);
    this.mergeLength = 0;
    this.mergeDrop = false;
    this.mergeCopy(at + this.headerLength, length - this.headerLength);
  }

  private mergeMore(at: number, length: number): void {
    this.mergeRemaining--;
    this.mergeCopy(at, length);
    if (this.mergeRemaining > 0) return;
    if (this.mergeDrop) {
      this.counters.rxDrops++;
      return;
    }
    this.counters.rxMerged++;
    this.deliver(this.mergeBuffer!.subarray(0, this.mergeLength), this.mergeFlags, this.mergeCsumStart, this.mergeCsumOffset);
  }

  private mergeCopy(from: number, length: number): void {
    if (this.mergeDrop) return;
    if (this.mergeLength + length > MAX_MERGED_FRAME) {
      this.mergeDrop = true;
      return;
    }
    this.mergeBuffer!.set(this.rxBytes.subarray(from, from + length), this.mergeLength);
    this.mergeLength += length;
  }

  protected service(): boolean {
    const before = this.txFreeCount;
    return this.poll() > 0 || this.txFreeCount !== before;
  }

  protected busy(): boolean {
    return this.handler !== null || this.txq.inFlight > 0 || this.txUnkicked;
  }

  protected rejectAll(_error: Error): void {
    // Nothing waits on a promise here: receives stop, txBuffer() returns null from now on.
    this.mergeRemaining = 0;
  }

  protected override onConfigChange(): void {
    const was = this.link;
    this.refreshLink();
    if (was !== this.link) this.onLinkChange?.(this.link);
  }
}

/**
 * Finishes a partial checksum (§5.1.6.2): sums frame[start, length) — whose field at
 * start+offset holds the pseudo-header sum — and stores the complement there.
 */
function completeChecksum(frame: Uint8Array, length: number, start: number, offset: number): void {
  // The field holds the pseudo-header sum (§5.1.6.4): summing over it gives the final value.
  // Natively in the guest: a 64 KiB segment (GUEST_TSO4) would take milliseconds in QuickJS.
  const value = checksum(frame, start, length);
  frame[start + offset] = value >> 8;
  frame[start + offset + 1] = value & 0xff;
}

/** A locally administered unicast MAC (§5.1.5: when VIRTIO_NET_F_MAC is absent), from the TSC and Math.random. */
function randomLocalMac(): Uint8Array {
  const mac = new Uint8Array(6);
  const tsc = hw.rdtsc();
  for (let i = 0; i < 6; i++) mac[i] = (Math.floor(Math.random() * 256) ^ Math.floor(tsc / 2 ** (8 * i))) & 0xff;
  mac[0] = (mac[0]! & 0xfe) | 0x02; // unicast, locally administered
  return mac;
}

const opened: (VirtioNet | Error | undefined)[] = [];

/**
 * This core's side of a multiqueue NIC owned by another core: a NetDevice at once (the
 * network unit comes up synchronously), whose queue pair starts when the owner's hand-over
 * message arrives. Until then txBuffer() returns null and nothing is received.
 */
export class VirtioNetQueuePair implements NetDevice {
  readonly mac: Uint8Array;
  readonly mtu: number;
  /** The driver of this core's pair, once the owner handed it over. */
  driver: VirtioNet | null = null;
  /** Why the pair could not start, or null. */
  error: Error | null = null;
  private handler: NetReceiveHandler | null = null;

  constructor(transport: VirtioMmioTransport, readonly pair: number, options: NetDeviceOptions = {}) {
    // Config space reads have no side effects (the owner is the one that sets registers).
    this.mac = transport.readConfig((c) => {
      const mac = new Uint8Array(6);
      for (let i = 0; i < 6; i++) mac[i] = c.u8(CONFIG_MAC + i);
      return mac;
    });
    this.mtu = 1500;
    let remove: (() => void) | null = null;
    let arrived = false;
    remove = onKernelMessage(MQ_TOPIC, (value) => {
      arrived = true;
      remove?.();
      const setup = value as QueuePairSetup;
      try {
        if (setup.pair !== pair) throw new DeviceError(`queue pair ${setup.pair} handed to the core of pair ${pair}`);
        this.driver = new VirtioNet(transport, options, setup);
        if (this.handler !== null) this.driver.setReceiveHandler(this.handler);
      } catch (e) {
        this.error = e as Error;
        hw.write(`torito: virtio-net queue pair ${pair} is unusable: ${(e as Error).message}\n`);
      }
    });
    if (arrived) remove();
  }

  /** Whether the pair has started (the owner's hand-over arrived). */
  get ready(): boolean {
    return this.driver !== null;
  }

  txBuffer(length: number): Uint8Array | null {
    return this.driver !== null ? this.driver.txBuffer(length) : null;
  }

  transmit(buffer: Uint8Array, length: number): void {
    this.driver!.transmit(buffer, length);
  }

  /** The pair's driver's NetDevice.largeSend (0 until the owner hands the pair over). */
  get largeSend(): number {
    return this.driver !== null ? this.driver.largeSend : 0;
  }

  transmitSegmented(buffer: Uint8Array, length: number, headerLength: number, segmentSize: number): void {
    this.driver!.transmitSegmented(buffer, length, headerLength, segmentSize);
  }

  setReceiveHandler(handler: NetReceiveHandler | null): void {
    this.handler = handler;
    this.driver?.setReceiveHandler(handler);
  }

  poll(): number {
    return this.driver !== null ? this.driver.poll() : 0;
  }
}

/** Queue pair `pair` of the multiqueue NIC another core owns (see VirtioNetQueuePair). */
export function openNetQueuePair(pair: number, options: NetDeviceOptions = {}): VirtioNetQueuePair {
  const transport = sharedDevice("net", 0);
  if (transport === null) throw new Error("no multiqueue virtio-net device (run with --net tap:NAME,mq)");
  return new VirtioNetQueuePair(transport, pair, options);
}

/**
 * The `index`-th virtio-net device (default the first), started on first use with
 * `options`; later calls return the same driver. Throws when there is none or it failed.
 */
export function openNetDevice(index = 0, options: NetDeviceOptions = {}): VirtioNet {
  const existing = opened[index];
  if (existing instanceof Error) throw existing;
  if (existing !== undefined) return existing;
  const transport = claimDevice("net", index);
  if (transport === null) throw new Error(`no virtio-net device #${index} (run with --port or --netdev)`);
  try {
    const device = new VirtioNet(transport, options);
    opened[index] = device;
    return device;
  } catch (e) {
    transport.fail();
    const error = new DeviceError(`virtio-net device #${index} is unusable: ${(e as Error).message}`);
    opened[index] = error;
    throw error;
  }
}
