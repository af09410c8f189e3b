/**
 * One NIC, one queue pair per core, one TCP/IP stack per core (`torito run --net tap:NAME,mq`;
 * the driver side is in kernel/devices/virtio/net.ts). Every core has the same MAC and the
 * same IPv4 address. What keeps the stacks apart:
 *
 * - Steering. Linux's tun picks the queue of each frame for the guest by the flow's hash,
 *   and remembers the queue a flow was last transmitted from (for a few seconds), so an
 *   incoming TCP connection stays on the core that answered its SYN. The guest does not
 *   rely on that memory for its OWN connections: the ephemeral port range is split into one
 *   disjoint slice per core, so the destination port of a reply names the core that opened
 *   the connection, and a frame that lands on another core's queue is forwarded to it over
 *   the cores' message rings (rare: only when tun's flow memory has expired or collided).
 * - Neighbours. Non-IP frames carry no flow: an ARP reply to core 1's request may arrive on
 *   any queue. Every ARP frame a core receives is processed there AND copied to the other
 *   cores' stacks, so the core that asked learns the answer (a request for our address is
 *   then answered by every core: the peer sees duplicate, identical replies, which is
 *   harmless). Learning neighbours from incoming IP frames instead would not help a core
 *   that has received nothing yet from the peer it wants to reach.
 * - Configuration: one static address for all cores (DHCP would run once per core with the
 *   same MAC; the host refuses mq without --ip).
 */
import { onKernelMessage, postKernelMessage } from "../process/cores.ts";

/** First port of the dynamic range (RFC 6335 §6). */
export const EPHEMERAL_FIRST = 49152;
/** Size of the dynamic range. */
export const EPHEMERAL_COUNT = 65536 - EPHEMERAL_FIRST;

/** steerFrame(): handle the frame on this core only. */
export const STEER_LOCAL = -1;
/** steerFrame(): an ARP frame: handle it here and give every other core a copy. */
export const STEER_ARP = -2;

/** The slice of the ephemeral range core `core` of `cores` sharing one address picks local ports from. */
export function ephemeralRange(core: number, cores: number): { first: number; count: number } {
  const count = Math.floor(EPHEMERAL_COUNT / cores);
  return { first: EPHEMERAL_FIRST + core * count, count };
}

/** The core whose ephemeral slice holds `port`, or -1 (a port below the range, or in the leftover). */
export function portCore(port: number, cores: number): number {
  if (port < EPHEMERAL_FIRST) return -1;
  const core = Math.floor((port - EPHEMERAL_FIRST) / Math.floor(EPHEMERAL_COUNT / cores));
  return core < cores ? core : -1;
}

/**
 * Where a frame received on core `self` of `cores` goes: STEER_LOCAL, STEER_ARP, or the
 * index of the core whose ephemeral slice holds its TCP/UDP destination port. Reads five
 * bytes of the frame; anything it cannot classify (short, fragments, other protocols) is
 * local.
 */
export function steerFrame(frame: Uint8Array, self: number, cores: number): number {
  if (frame.length < 14) return STEER_LOCAL;
  const etherType = (frame[12]! << 8) | frame[13]!;
  if (etherType === 0x0806) return STEER_ARP;
  if (etherType !== 0x0800 || frame.length < 34) return STEER_LOCAL;
  const protocol = frame[23]!;
  if (protocol !== 6 && protocol !== 17) return STEER_LOCAL;
  if (((frame[20]! & 0x1f) | frame[21]!) !== 0) return STEER_LOCAL; // a later fragment: no ports
  const at = 14 + (frame[14]! & 0x0f) * 4 + 2;
  if (frame.length < at + 2) return STEER_LOCAL;
  const core = portCore((frame[at]! << 8) | frame[at + 1]!, cores);
  return core >= 0 && core !== self ? core : STEER_LOCAL;
}

/** Receive handler of a stack: a frame (a view valid during the call) and whether its checksum was verified. */
type FrameHandler = (frame: Uint8Array, checksumVerified?: boolean) => void;

/** Kernel message topic of frames another core's queue received for this core's stack. */
const FRAME_TOPIC = "net-frame";

/**
 * This core's side of the steering: `receive` goes between the device and the stack
 * (`deliver`), and while started, frames other cores forward arrive through the cores'
 * rings into `deliver` too.
 */
export class MultiqueueSteering {
  /** Frames sent to other cores (their ports), ARP copies given, frames received from others. */
  readonly counters = { forwardedOut: 0, arpShared: 0, forwardedIn: 0 };
  private removeListener: (() => void) | null = null;

  constructor(readonly self: number, readonly cores: number, private readonly deliver: FrameHandler) {}

  /** The device's receive handler. */
  readonly receive: FrameHandler = (frame, checksumVerified) => {
    const to = steerFrame(frame, this.self, this.cores);
    if (to === STEER_LOCAL) {
      this.deliver(frame, checksumVerified);
      return;
    }
    if (to === STEER_ARP) {
      for (let core = 0; core < this.cores; core++) {
        if (core !== this.self && this.forward(core, frame)) this.counters.arpShared++;
      }
      this.deliver(frame, checksumVerified);
      return;
    }
    if (this.forward(to, frame)) this.counters.forwardedOut++;
  };

  /** Accepts frames from the other cores (while this core's network unit runs). */
  start(): void {
    this.removeListener ??= onKernelMessage(FRAME_TOPIC, (frame) => {
      this.counters.forwardedIn++;
      this.deliver(frame as Uint8Array, false);
    });
  }

  stop(): void {
    this.removeListener?.();
    this.removeListener = null;
  }

  private forward(core: number, frame: Uint8Array): boolean {
    try {
      postKernelMessage(core, FRAME_TOPIC, frame); // copied: the view is the receive buffer
      return true;
    } catch {
      return false; // that core stopped: its connections are gone with it
    }
  }
}
