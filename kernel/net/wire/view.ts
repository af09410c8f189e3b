/**
 * The base of the fixed-layout wire views (Ethernet, ARP, IPv4 headers): a view over
 * `bytes` at `offset`, re-pointed per packet with bind() so that nothing is allocated on
 * the packet path.
 */
export class ByteView {
  constructor(public bytes: Uint8Array, public offset = 0) {}

  /** Points the view at another packet; returns this. */
  bind(bytes: Uint8Array, offset = 0): this {
    this.bytes = bytes;
    this.offset = offset;
    return this;
  }
}
