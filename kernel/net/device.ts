/**
 * What the network unit needs from a network device (the virtio-net driver, or a test
 * double on the host). Frames are Ethernet II without FCS.
 *
 * Zero copy: the stack builds each outgoing frame directly in a buffer the device hands
 * out (DMA memory on a real device), and reads each incoming frame from a view over the
 * device's receive buffer, valid only during the handler call.
 */
export interface NetDevice {
  /** The interface's MAC address (6 bytes). */
  readonly mac: Uint8Array;
  /** Largest IP packet the link carries (1500 on Ethernet). */
  readonly mtu: number;
  /** A buffer of at least `length` bytes for one outgoing frame, or null when the
   *  transmit queue is full (back-pressure: try again after the next poll). */
  txBuffer(length: number): Uint8Array | null;
  /** Sends the first `length` bytes of a buffer obtained from txBuffer(). */
  transmit(buffer: Uint8Array, length: number): void;
  /** Installs the handler the device calls for each received frame (null removes it).
   *  `checksumVerified` is true when the device already verified the TCP/UDP checksum. */
  setReceiveHandler(handler: ((frame: Uint8Array, checksumVerified?: boolean) => void) | null): void;
  /** Delivers received frames and reclaims transmitted buffers; returns how many frames
   *  arrived. Called by the network unit's poll loop. */
  poll(): number;
  /** Publishes the frames transmitted so far to the hardware now, rather than at the end
   *  of this stretch of JavaScript (a device that publishes each at once need not have it). */
  flush?(): void;
  /**
   * TCP segmentation offload: the largest frame (bytes) transmitSegmented() takes, 0 or absent
   * without it. txBuffer() then hands out buffers of up to this many bytes.
   */
  readonly largeSend?: number;
  /**
   * Sends a frame holding ONE TCP/IPv4 segment larger than the link allows, for the device to
   * cut into segments of `segmentSize` payload bytes (each with the headers of the first
   * `headerLength` bytes: Ethernet, IPv4 without options, TCP with its options). The TCP
   * checksum field holds the pseudo-header sum over the whole segment's length, folded to
   * 16 bits and not complemented; the device completes each segment's checksum, IPv4 header
   * checksum and identification, sequence number, and PSH/FIN only on the last.
   */
  transmitSegmented?(buffer: Uint8Array, length: number, headerLength: number, segmentSize: number): void;
}
