/**
 * The virtio-mmio transport (virtio 1.2 §4.2): register access, device reset, the status
 * handshake (§3.1.1), feature negotiation (§2.2), queue set-up and config space with
 * generation checks (§2.5.1). Both the modern interface (Version 2, §4.2.2) and the legacy
 * one QEMU gives by default (Version 1, §4.2.4) are supported.
 *
 * Drivers never touch registers: they go through a VirtioMmioTransport. Every register
 * access is a VM exit (~30 µs here), so nothing in this file is on a per-request path except
 * notify(), and that only when the device asked to be notified (EVENT_IDX).
 */
import { hw } from "../../hw.ts";

/** "virt" in little-endian: the MagicValue register of every virtio-mmio slot (§4.2.2). */
export const VIRTIO_MMIO_MAGIC = 0x74726976;

// Register offsets (§4.2.2; legacy-only ones from §4.2.4).
const REG_MAGIC = 0x000;
const REG_VERSION = 0x004;
const REG_DEVICE_ID = 0x008;
const REG_VENDOR_ID = 0x00c;
const REG_DEVICE_FEATURES = 0x010;
const REG_DEVICE_FEATURES_SEL = 0x014;
const REG_DRIVER_FEATURES = 0x020;
const REG_DRIVER_FEATURES_SEL = 0x024;
const REG_LEGACY_GUEST_PAGE_SIZE = 0x028;
const REG_QUEUE_SEL = 0x030;
const REG_QUEUE_NUM_MAX = 0x034;
const REG_QUEUE_NUM = 0x038;
const REG_LEGACY_QUEUE_ALIGN = 0x03c;
const REG_LEGACY_QUEUE_PFN = 0x040;
const REG_QUEUE_READY = 0x044;
const REG_QUEUE_NOTIFY = 0x050;
const REG_INTERRUPT_STATUS = 0x060;
const REG_INTERRUPT_ACK = 0x064;
const REG_STATUS = 0x070;
const REG_QUEUE_DESC_LOW = 0x080;
const REG_QUEUE_DESC_HIGH = 0x084;
const REG_QUEUE_DRIVER_LOW = 0x090;
const REG_QUEUE_DRIVER_HIGH = 0x094;
const REG_QUEUE_DEVICE_LOW = 0x0a0;
const REG_QUEUE_DEVICE_HIGH = 0x0a4;
const REG_CONFIG_GENERATION = 0x0fc;
const REG_CONFIG = 0x100;

/** Device status bits (§2.1). */
export const STATUS_ACKNOWLEDGE = 1;
export const STATUS_DRIVER = 2;
export const STATUS_DRIVER_OK = 4;
export const STATUS_FEATURES_OK = 8;
export const STATUS_DEVICE_NEEDS_RESET = 64;
export const STATUS_FAILED = 128;

/** Device-independent feature bits (§6). */
export const VIRTIO_F_INDIRECT_DESC = 28;
export const VIRTIO_F_EVENT_IDX = 29;
export const VIRTIO_F_VERSION_1 = 32;

/** InterruptStatus bits (§4.2.2): a used buffer, or a configuration change. */
export const INTERRUPT_USED_BUFFER = 1;
export const INTERRUPT_CONFIG_CHANGE = 2;

/** Legacy queue alignment (§2.7.2 legacy layout; QueueAlign register). */
export const LEGACY_QUEUE_ALIGN = 4096;

/** Where a queue's three parts live in guest-physical memory (§2.7). */
export interface QueueAddresses {
  desc: number;
  avail: number;
  used: number;
}

/** A virtio device as the transport sees it, before any driver claims it. */
export class VirtioMmioTransport {
  /** Base address of the 512-byte register window. */
  readonly base: number;
  /** IOAPIC input (GSI) of the device's interrupt, or -1 when unknown. */
  readonly irq: number;
  /** 1 = legacy (§4.2.4), 2 = modern (§4.2.2). */
  readonly version: number;
  /** Device type (§5): 1 net, 2 block, 3 console, 4 entropy, ... 0 = empty slot. */
  readonly deviceId: number;
  /** The features both sides agreed on (bit n of the 64-bit feature set), after negotiate(). */
  features = 0n;

  constructor(base: number, irq: number) {
    this.base = base;
    this.irq = irq;
    this.version = hw.mmioRead32(base + REG_VERSION);
    this.deviceId = hw.mmioRead32(base + REG_DEVICE_ID);
  }

  // Every register access is a VM exit (~30-75 µs here), and device start-up is on the boot
  // path of every server: the driver keeps what it wrote (Status, QueueSel) instead of
  // reading it back.
  /** The Status bits this driver has set since the last reset. */
  private driverStatus = 0;
  /** The queue QueueSel points at, or -1 when unknown. */
  private selectedQueue = -1;

  /** The vendor id (read when asked: nothing on the boot path needs it). */
  get vendorId(): number {
    return hw.mmioRead32(this.base + REG_VENDOR_ID);
  }

  private selectQueue(index: number): void {
    if (this.selectedQueue === index) return;
    hw.mmioWrite32(this.base + REG_QUEUE_SEL, index);
    this.selectedQueue = index;
  }

  /** True when the slot holds a virtio-mmio device at all (magic and a known version). */
  static present(base: number): boolean {
    return hw.mmioRead32(base + REG_MAGIC) === VIRTIO_MMIO_MAGIC;
  }

  get legacy(): boolean {
    return this.version === 1;
  }

  /** Whether feature bit `bit` was negotiated. */
  has(bit: number): boolean {
    return ((this.features >> BigInt(bit)) & 1n) === 1n;
  }

  status(): number {
    return hw.mmioRead32(this.base + REG_STATUS);
  }

  /** Writing 0 resets the device (§2.4, §4.2.3.1); we then wait until Status reads 0. */
  reset(): void {
    hw.mmioWrite32(this.base + REG_STATUS, 0);
    this.driverStatus = 0;
    this.selectedQueue = -1;
    for (let i = 0; i < 1000; i++) if (this.status() === 0) return;
    throw new Error(`virtio-mmio@${hex(this.base)}: device did not reset`);
  }

  /** ORs `bits` into the status this driver has written since the reset (no read-back). */
  addStatus(bits: number): void {
    this.driverStatus |= bits;
    hw.mmioWrite32(this.base + REG_STATUS, this.driverStatus);
  }

  /** Tells the device the driver gave up on it (§2.1: FAILED). */
  fail(): void {
    try {
      this.addStatus(STATUS_FAILED);
    } catch {
      // nothing more to do for a device we already consider dead
    }
  }

  /** The device's 64-bit feature set (§4.2.2 DeviceFeatures with DeviceFeaturesSel). */
  deviceFeatures(): bigint {
    hw.mmioWrite32(this.base + REG_DEVICE_FEATURES_SEL, 0);
    const low = hw.mmioRead32(this.base + REG_DEVICE_FEATURES);
    let high = 0;
    if (!this.legacy) {
      hw.mmioWrite32(this.base + REG_DEVICE_FEATURES_SEL, 1);
      high = hw.mmioRead32(this.base + REG_DEVICE_FEATURES);
    }
    return (BigInt(high) << 32n) | BigInt(low);
  }

  /**
   * Device initialization steps 1-6 (§3.1.1): reset, ACKNOWLEDGE, DRIVER, read the device's
   * features, accept those in `wanted` (plus VERSION_1 on a modern device), FEATURES_OK and
   * check the device kept it. Returns the negotiated set (also kept in `features`).
   * `requires` lists [feature, prerequisites]: a feature is accepted only with all of them.
   */
  negotiate(wanted: readonly number[], requires: readonly (readonly [number, readonly number[]])[] = []): bigint {
    this.reset();
    this.addStatus(STATUS_ACKNOWLEDGE);
    this.addStatus(STATUS_DRIVER);
    const offered = this.deviceFeatures();
    let want = 0n;
    for (const bit of wanted) want |= 1n << BigInt(bit);
    if (!this.legacy) want |= 1n << BigInt(VIRTIO_F_VERSION_1);
    let accepted = offered & want;
    for (const [bit, needs] of requires) {
      if (needs.some((n) => ((accepted >> BigInt(n)) & 1n) === 0n)) accepted &= ~(1n << BigInt(bit));
    }
    if (!this.legacy && (accepted >> BigInt(VIRTIO_F_VERSION_1)) === 0n) {
      throw new Error(`virtio-mmio@${hex(this.base)}: modern transport without VIRTIO_F_VERSION_1`);
    }
    hw.mmioWrite32(this.base + REG_DRIVER_FEATURES_SEL, 0);
    hw.mmioWrite32(this.base + REG_DRIVER_FEATURES, Number(accepted & 0xffffffffn));
    if (!this.legacy) {
      hw.mmioWrite32(this.base + REG_DRIVER_FEATURES_SEL, 1);
      hw.mmioWrite32(this.base + REG_DRIVER_FEATURES, Number(accepted >> 32n));
      // §3.1.1 steps 5-6; legacy devices have no FEATURES_OK (§3.1.2).
      this.addStatus(STATUS_FEATURES_OK);
      if ((this.status() & STATUS_FEATURES_OK) === 0) {
        throw new Error(`virtio-mmio@${hex(this.base)}: device refused features 0x${accepted.toString(16)}`);
      }
    } else {
      hw.mmioWrite32(this.base + REG_LEGACY_GUEST_PAGE_SIZE, LEGACY_QUEUE_ALIGN);
    }
    this.features = accepted;
    return accepted;
  }

  /** Largest size the device allows for queue `index` (0 = the queue does not exist). */
  queueMaxSize(index: number): number {
    this.selectQueue(index);
    return hw.mmioRead32(this.base + REG_QUEUE_NUM_MAX);
  }

  /**
   * Hands queue `index` of `size` entries to the device (§4.2.3.2; legacy §4.2.4: one
   * page-aligned block whose used ring starts at the next LEGACY_QUEUE_ALIGN boundary,
   * which is how Virtqueue lays it out for both versions).
   */
  setupQueue(index: number, size: number, addresses: QueueAddresses): void {
    const b = this.base;
    this.selectQueue(index);
    const ready = this.legacy ? hw.mmioRead32(b + REG_LEGACY_QUEUE_PFN) : hw.mmioRead32(b + REG_QUEUE_READY);
    if (ready !== 0) throw new Error(`virtio-mmio@${hex(b)}: queue ${index} already in use`);
    hw.mmioWrite32(b + REG_QUEUE_NUM, size);
    if (this.legacy) {
      hw.mmioWrite32(b + REG_LEGACY_QUEUE_ALIGN, LEGACY_QUEUE_ALIGN);
      hw.mmioWrite32(b + REG_LEGACY_QUEUE_PFN, addresses.desc / LEGACY_QUEUE_ALIGN);
      return;
    }
    const low = (a: number) => a % 0x100000000;
    const high = (a: number) => Math.floor(a / 0x100000000);
    hw.mmioWrite32(b + REG_QUEUE_DESC_LOW, low(addresses.desc));
    hw.mmioWrite32(b + REG_QUEUE_DESC_HIGH, high(addresses.desc));
    hw.mmioWrite32(b + REG_QUEUE_DRIVER_LOW, low(addresses.avail));
    hw.mmioWrite32(b + REG_QUEUE_DRIVER_HIGH, high(addresses.avail));
    hw.mmioWrite32(b + REG_QUEUE_DEVICE_LOW, low(addresses.used));
    hw.mmioWrite32(b + REG_QUEUE_DEVICE_HIGH, high(addresses.used));
    hw.mmioWrite32(b + REG_QUEUE_READY, 1);
  }

  /** §3.1.1 step 8: the driver is ready; the device may now use its queues. */
  driverOk(): void {
    this.addStatus(STATUS_DRIVER_OK);
  }

  /** Notifies the device that queue `index` has new available buffers (§4.2.3.3). */
  notify(index: number): void {
    hw.mmioWrite32(this.base + REG_QUEUE_NOTIFY, index);
  }

  /** Reads and acknowledges InterruptStatus (two VM exits: only on a wake-up, never in the poll path). */
  acknowledgeInterrupt(): number {
    const status = hw.mmioRead32(this.base + REG_INTERRUPT_STATUS);
    if (status !== 0) hw.mmioWrite32(this.base + REG_INTERRUPT_ACK, status);
    return status;
  }

  /**
   * Reads device config space through `read` and retries until ConfigGeneration is stable
   * around it (§2.5.1, §4.2.2); legacy devices have no generation counter.
   */
  readConfig<T>(read: (config: ConfigReader) => T): T {
    const reader = new ConfigReader(this.base + REG_CONFIG);
    if (this.legacy) return read(reader);
    for (let attempt = 0; attempt < 100; attempt++) {
      const before = hw.mmioRead32(this.base + REG_CONFIG_GENERATION);
      const value = read(reader);
      if (hw.mmioRead32(this.base + REG_CONFIG_GENERATION) === before) return value;
    }
    throw new Error(`virtio-mmio@${hex(this.base)}: config space keeps changing`);
  }

  /** Writes one config-space field (e.g. a console's emergency write). */
  writeConfig32(offset: number, value: number): void {
    hw.mmioWrite32(this.base + REG_CONFIG + offset, value);
  }
}

/** Little-endian reads of device config space (§2.5). */
export class ConfigReader {
  constructor(private readonly at: number) {}
  u8(offset: number): number {
    return hw.mmioRead8(this.at + offset);
  }
  u16(offset: number): number {
    return hw.mmioRead16(this.at + offset);
  }
  u32(offset: number): number {
    return hw.mmioRead32(this.at + offset);
  }
  /** Two 32-bit reads (64-bit MMIO accesses are not required to work, §4.2.2.2). */
  u64(offset: number): number {
    return hw.mmioRead32(this.at + offset) + hw.mmioRead32(this.at + offset + 4) * 0x100000000;
  }
}

/** "0xfeb00e00". */
export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
