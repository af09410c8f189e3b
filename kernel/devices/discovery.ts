/**
 * Finding virtio-mmio devices.
 *
 * 1. The command line: `virtio_mmio.device=<size>@<base>:<irq>[:<id>]` (Linux's syntax,
 *    which QEMU microvm with acpi=off appends for every device, and Firecracker passes).
 *    Parsing it is free; nothing is read from the devices until a driver is needed.
 *    (Firecracker's window at 0xd0000000 is parsed, but the native MMIO bindings accept only
 *    0xfe000000 and up today: such devices are reported as discovery warnings.)
 * 2. Otherwise, probing the microvm window: slots of 512 bytes from 0xfeb00000, MagicValue
 *    0x74726976, DeviceID 0 = empty slot. Each probe is a register read (~30 µs here), so
 *    it runs only on the first use of a devices API. With acpi=off microvm has 8 slots and
 *    slot i raises GSI 5+i; with acpi=on (several CPUs) it has 24 slots and slot i raises
 *    GSI 24+i, an input of the second IOAPIC (the runtime finds it in the MADT).
 *
 * Order: QEMU microvm fills its slots from the top, so the first device of a kind on the
 * VMM's command line has the highest address. Devices are listed in that order (highest
 * address first): "the first --disk" is blk device 0 in the guest too.
 */

/** One device location. */
export interface DeviceLocation {
  /** Base of the register window. */
  base: number;
  /** Size of the window in bytes. */
  size: number;
  /** IOAPIC input (GSI), or -1 when unknown or unroutable. */
  irq: number;
}

/** Base of QEMU microvm's virtio-mmio window. */
export const MICROVM_MMIO_BASE = 0xfeb00000;
/** Distance between slots. */
export const MICROVM_MMIO_STRIDE = 0x200;
/** Slots with acpi=off. */
export const MICROVM_MMIO_SLOTS = 8;
/** GSI of slot 0 with acpi=off (microvm's VIRTIO_IRQ_BASE). */
export const MICROVM_MMIO_IRQ_BASE = 5;
/** Slots with acpi=on. */
export const MICROVM_ACPI_MMIO_SLOTS = 24;
/** GSI of slot 0 with acpi=on: the first input of the second IOAPIC. */
export const MICROVM_ACPI_MMIO_IRQ_BASE = 24;

function parseNumber(text: string): number {
  const match = /^(0x[0-9a-f]+|\d+)([kmg])?$/i.exec(text);
  if (!match) return NaN;
  const scale = { k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(match[2] ?? "").toLowerCase() as "k"] ?? 1;
  return Number(match[1]) * scale;
}

/**
 * The devices a command line lists, from its kernel option tokens (kernel/cmdline.ts).
 * Malformed entries are returned in `errors` and skipped.
 */
export function devicesFromCmdline(kernelTokens: readonly string[]): { devices: DeviceLocation[]; errors: string[] } {
  const devices: DeviceLocation[] = [];
  const errors: string[] = [];
  for (const token of kernelTokens) {
    if (!token.startsWith("virtio_mmio.device=")) continue;
    const spec = token.slice("virtio_mmio.device=".length);
    const match = /^([^@]+)@([^:]+):([^:]+)(?::\d+)?$/.exec(spec);
    const size = match ? parseNumber(match[1]!) : NaN;
    const base = match ? parseNumber(match[2]!) : NaN;
    const irq = match ? parseNumber(match[3]!) : NaN;
    if (!(size >= 0x100) || !Number.isInteger(base) || base % 4 !== 0 || !(irq >= 0)) {
      errors.push(`ignoring malformed '${token}' (expected virtio_mmio.device=<size>@<base>:<irq>)`);
      continue;
    }
    devices.push({ base, size, irq });
  }
  devices.sort((a, b) => b.base - a.base);
  return { devices, errors };
}

/**
 * Probes `slots` slots of the microvm window with `read32` (the MMIO read), from the top;
 * returns the slots that hold a device with microvm's interrupt numbering (acpi=off for 8
 * slots, acpi=on for 24).
 */
export function probeWindow(read32: (addr: number) => number, slots = MICROVM_MMIO_SLOTS): DeviceLocation[] {
  const irqBase = slots === MICROVM_ACPI_MMIO_SLOTS ? MICROVM_ACPI_MMIO_IRQ_BASE : MICROVM_MMIO_IRQ_BASE;
  const found: DeviceLocation[] = [];
  for (let i = slots - 1; i >= 0; i--) {
    const base = MICROVM_MMIO_BASE + i * MICROVM_MMIO_STRIDE;
    if (read32(base) !== 0x74726976) continue;        // MagicValue
    if (read32(base + 0x008) === 0) continue;         // DeviceID 0: no device in this slot
    found.push({ base, size: MICROVM_MMIO_STRIDE, irq: irqBase + i });
  }
  return found;
}

/**
 * Which core owns device `index` of `kind` (in discovery order): the kernel option
 * `torito.owner.<kind>=c0,c1,...` lists the owners in order (`torito run` passes it), and
 * a device it does not cover goes to core index mod count — one NIC per core, as in Toro.
 * Returns an error message instead for an owner that is not a core.
 */
export function deviceOwner(options: ReadonlyMap<string, string>, kind: string, index: number, coreCount: number): number | string {
  const listed = options.get(`torito.owner.${kind}`);
  if (listed !== undefined) {
    const owners = listed.split(",");
    if (index < owners.length) {
      const text = owners[index]!;
      const core = /^\d+$/.test(text) ? Number(text) : NaN;
      if (!(core < coreCount)) return `torito.owner.${kind}: no core '${text}' for ${kind} device ${index} (the VM has ${coreCount})`;
      return core;
    }
  }
  return index % coreCount;
}
