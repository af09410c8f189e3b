/**
 * Initial sequence numbers per RFC 6528 §3: ISN = M + F(localip, localport, remoteip,
 * remoteport, secretkey), M a 4-µs clock, F a keyed hash. F is HalfSipHash-2-4 (a 64-bit
 * key; the injected secret's first 8 bytes) — cheap in 32-bit integer JavaScript.
 */

/** A keyed 32-bit hash of a connection's 4-tuple; also used for the timestamp offset. */
export class TupleHasher {
  private readonly key0: number;
  private readonly key1: number;

  /** `secret` must hold at least 8 random bytes (only the first 8 are used). */
  constructor(secret: Uint8Array) {
    if (secret.length < 8) throw new RangeError("TCP ISN secret needs at least 8 bytes");
    this.key0 = (secret[0]! | (secret[1]! << 8) | (secret[2]! << 16) | (secret[3]! << 24)) >>> 0;
    this.key1 = (secret[4]! | (secret[5]! << 8) | (secret[6]! << 16) | (secret[7]! << 24)) >>> 0;
  }

  /** HalfSipHash-2-4 of (localAddress, remoteAddress, ports, salt). */
  hash(localAddress: number, localPort: number, remoteAddress: number, remotePort: number, salt = 0): number {
    const state = [this.key0, this.key1, (0x6c796765 ^ this.key0) >>> 0, (0x74656462 ^ this.key1) >>> 0];
    absorb(state, localAddress >>> 0);
    absorb(state, remoteAddress >>> 0);
    absorb(state, ((localPort << 16) | remotePort) >>> 0);
    absorb(state, salt >>> 0);
    absorb(state, (16 << 24) >>> 0);
    state[2] = (state[2]! ^ 0xff) >>> 0;
    for (let i = 0; i < 4; i++) round(state);
    return (state[1]! ^ state[3]!) >>> 0;
  }

  /** RFC 6528 ISN at time `now` (ms): the hash plus a counter ticking every 4 µs. */
  initialSequence(localAddress: number, localPort: number, remoteAddress: number, remotePort: number, now: number): number {
    const clock = Math.floor(now * 250) % 0x100000000;
    return (this.hash(localAddress, localPort, remoteAddress, remotePort) + clock) >>> 0;
  }
}

function rotl(x: number, b: number): number { return ((x << b) | (x >>> (32 - b))) >>> 0; }

function round(v: number[]): void {
  let v0 = v[0]!, v1 = v[1]!, v2 = v[2]!, v3 = v[3]!;
  v0 = (v0 + v1) >>> 0; v1 = rotl(v1, 5); v1 ^= v0; v0 = rotl(v0, 16);
  v2 = (v2 + v3) >>> 0; v3 = rotl(v3, 8); v3 ^= v2;
  v0 = (v0 + v3) >>> 0; v3 = rotl(v3, 7); v3 ^= v0;
  v2 = (v2 + v1) >>> 0; v1 = rotl(v1, 13); v1 ^= v2; v2 = rotl(v2, 16);
  v[0] = v0 >>> 0; v[1] = v1 >>> 0; v[2] = v2 >>> 0; v[3] = v3 >>> 0;
}

function absorb(v: number[], word: number): void {
  v[3] = (v[3]! ^ word) >>> 0;
  round(v);
  round(v);
  v[0] = (v[0]! ^ word) >>> 0;
}
