/**
 * The kernel's CSPRNG behind the global `crypto` (getRandomValues, randomUUID): ChaCha20
 * (RFC 8439 block function) in fast-key-erasure mode — every refill of the output buffer
 * also replaces the key, so earlier output cannot be recomputed from the state.
 *
 * Seeded once, on first use, by a `seed` function the kernel provides (the boot seed `torito
 * run` passes through fw_cfg, with virtio-rng mixed in when the VM has one, else TSC jitter
 * with a warning: see kernel/devices/index.ts). In the guest the
 * block function runs natively (hw.chacha20); chacha20Block is the reference and Node's path.
 */
import { hw, isNative } from "../hw.ts";

const SIGMA = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574];

/** In the guest the block function runs natively (~37 µs per block in QuickJS); on Node (unit tests) chacha20Block. */
const nativeChaCha = isNative ? hw.chacha20 : null;

/** One ChaCha20 block: 16 output words from an 8-word key, a 32-bit counter and 3-word nonce. */
export function chacha20Block(key: Uint32Array, counter: number, nonce: Uint32Array, out: Uint32Array): void {
  let x0 = SIGMA[0]!, x1 = SIGMA[1]!, x2 = SIGMA[2]!, x3 = SIGMA[3]!;
  let x4 = key[0]!, x5 = key[1]!, x6 = key[2]!, x7 = key[3]!;
  let x8 = key[4]!, x9 = key[5]!, x10 = key[6]!, x11 = key[7]!;
  let x12 = counter >>> 0, x13 = nonce[0]!, x14 = nonce[1]!, x15 = nonce[2]!;
  const j = [x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15];
  for (let i = 0; i < 10; i++) {
    // column rounds
    x0 = (x0 + x4) | 0; x12 ^= x0; x12 = (x12 << 16) | (x12 >>> 16);
    x8 = (x8 + x12) | 0; x4 ^= x8; x4 = (x4 << 12) | (x4 >>> 20);
    x0 = (x0 + x4) | 0; x12 ^= x0; x12 = (x12 << 8) | (x12 >>> 24);
    x8 = (x8 + x12) | 0; x4 ^= x8; x4 = (x4 << 7) | (x4 >>> 25);
    x1 = (x1 + x5) | 0; x13 ^= x1; x13 = (x13 << 16) | (x13 >>> 16);
    x9 = (x9 + x13) | 0; x5 ^= x9; x5 = (x5 << 12) | (x5 >>> 20);
    x1 = (x1 + x5) | 0; x13 ^= x1; x13 = (x13 << 8) | (x13 >>> 24);
    x9 = (x9 + x13) | 0; x5 ^= x9; x5 = (x5 << 7) | (x5 >>> 25);
    x2 = (x2 + x6) | 0; x14 ^= x2; x14 = (x14 << 16) | (x14 >>> 16);
    x10 = (x10 + x14) | 0; x6 ^= x10; x6 = (x6 << 12) | (x6 >>> 20);
    x2 = (x2 + x6) | 0; x14 ^= x2; x14 = (x14 << 8) | (x14 >>> 24);
    x10 = (x10 + x14) | 0; x6 ^= x10; x6 = (x6 << 7) | (x6 >>> 25);
    x3 = (x3 + x7) | 0; x15 ^= x3; x15 = (x15 << 16) | (x15 >>> 16);
    x11 = (x11 + x15) | 0; x7 ^= x11; x7 = (x7 << 12) | (x7 >>> 20);
    x3 = (x3 + x7) | 0; x15 ^= x3; x15 = (x15 << 8) | (x15 >>> 24);
    x11 = (x11 + x15) | 0; x7 ^= x11; x7 = (x7 << 7) | (x7 >>> 25);
    // diagonal rounds
    x0 = (x0 + x5) | 0; x15 ^= x0; x15 = (x15 << 16) | (x15 >>> 16);
    x10 = (x10 + x15) | 0; x5 ^= x10; x5 = (x5 << 12) | (x5 >>> 20);
    x0 = (x0 + x5) | 0; x15 ^= x0; x15 = (x15 << 8) | (x15 >>> 24);
    x10 = (x10 + x15) | 0; x5 ^= x10; x5 = (x5 << 7) | (x5 >>> 25);
    x1 = (x1 + x6) | 0; x12 ^= x1; x12 = (x12 << 16) | (x12 >>> 16);
    x11 = (x11 + x12) | 0; x6 ^= x11; x6 = (x6 << 12) | (x6 >>> 20);
    x1 = (x1 + x6) | 0; x12 ^= x1; x12 = (x12 << 8) | (x12 >>> 24);
    x11 = (x11 + x12) | 0; x6 ^= x11; x6 = (x6 << 7) | (x6 >>> 25);
    x2 = (x2 + x7) | 0; x13 ^= x2; x13 = (x13 << 16) | (x13 >>> 16);
    x8 = (x8 + x13) | 0; x7 ^= x8; x7 = (x7 << 12) | (x7 >>> 20);
    x2 = (x2 + x7) | 0; x13 ^= x2; x13 = (x13 << 8) | (x13 >>> 24);
    x8 = (x8 + x13) | 0; x7 ^= x8; x7 = (x7 << 7) | (x7 >>> 25);
    x3 = (x3 + x4) | 0; x14 ^= x3; x14 = (x14 << 16) | (x14 >>> 16);
    x9 = (x9 + x14) | 0; x4 ^= x9; x4 = (x4 << 12) | (x4 >>> 20);
    x3 = (x3 + x4) | 0; x14 ^= x3; x14 = (x14 << 8) | (x14 >>> 24);
    x9 = (x9 + x14) | 0; x4 ^= x9; x4 = (x4 << 7) | (x4 >>> 25);
  }
  const x = [x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15];
  for (let i = 0; i < 16; i++) out[i] = (x[i]! + j[i]!) | 0;
}

const BLOCKS = 4;

/** A ChaCha20 generator with fast key erasure. */
export class ChaChaRng {
  private readonly key = new Uint32Array(8);
  private readonly nonce = new Uint32Array(3);
  private readonly block = new Uint32Array(16 * BLOCKS);
  private readonly bytes = new Uint8Array(this.block.buffer);
  /** Next unused byte of `bytes` (the first 32 bytes of each refill become the new key). */
  private at = this.bytes.length;

  /** Keys the generator from `seed` (at least 32 bytes; longer seeds are folded in). */
  constructor(seed: Uint8Array) {
    if (seed.length < 32) throw new RangeError("ChaChaRng needs a seed of at least 32 bytes");
    const k = new Uint8Array(this.key.buffer);
    for (let i = 0; i < seed.length; i++) k[i % 32]! ^= seed[i]!;
    if (seed.length > 32) this.refill();
    this.at = this.bytes.length;
  }

  private refill(): void {
    if (nativeChaCha !== null) nativeChaCha(this.key, this.nonce, 0, BLOCKS, this.block);
    else {
      const w = new Uint32Array(16);
      for (let b = 0; b < BLOCKS; b++) {
        chacha20Block(this.key, b, this.nonce, w);
        this.block.set(w, 16 * b);
      }
    }
    this.key.set(this.block.subarray(0, 8));
    this.bytes.fill(0, 0, 32);
    this.at = 32;
  }

  /** Fills `out` with random bytes. */
  fill(out: Uint8Array): void {
    let done = 0;
    while (done < out.length) {
      if (this.at === this.bytes.length) this.refill();
      const n = Math.min(out.length - done, this.bytes.length - this.at);
      out.set(this.bytes.subarray(this.at, this.at + n), done);
      this.bytes.fill(0, this.at, this.at + n);
      this.at += n;
      done += n;
    }
  }
}

type IntegerArray = Int8Array | Uint8Array | Uint8ClampedArray | Int16Array | Uint16Array | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

/** The Web Crypto subset Torito provides as the global `crypto`. */
export interface ToritoCrypto {
  /** Fills an integer typed array (at most 65536 bytes) with cryptographically strong random values. */
  getRandomValues<T extends IntegerArray>(array: T): T;
  /** A random RFC 4122 version 4 UUID. */
  randomUUID(): `${string}-${string}-${string}-${string}-${string}`;
}

/** Builds `crypto` around a generator seeded on first use by `seed()` (32+ bytes). */
export function createCrypto(seed: () => Uint8Array): ToritoCrypto {
  let rng: ChaChaRng | null = null;
  const source = (): ChaChaRng => {
    if (rng === null) {
      const bytes = seed();
      rng = new ChaChaRng(bytes);
      bytes.fill(0); // the key lives on in the generator only
    }
    return rng;
  };
  const getRandomValues = <T extends IntegerArray>(array: T): T => {
    const ok = array instanceof Int8Array || array instanceof Uint8Array || array instanceof Uint8ClampedArray ||
      array instanceof Int16Array || array instanceof Uint16Array || array instanceof Int32Array ||
      array instanceof Uint32Array || array instanceof BigInt64Array || array instanceof BigUint64Array;
    if (!ok) throw new TypeError("crypto.getRandomValues: the argument must be an integer TypedArray");
    if (array.byteLength > 65536) {
      const e = new Error(`crypto.getRandomValues: ${array.byteLength} bytes requested, the limit is 65536`);
      e.name = "QuotaExceededError";
      throw e;
    }
    source().fill(new Uint8Array(array.buffer, array.byteOffset, array.byteLength));
    return array;
  };
  const hexDigits = "0123456789abcdef";
  const randomUUID = (): `${string}-${string}-${string}-${string}-${string}` => {
    const b = new Uint8Array(16);
    source().fill(b);
    b[6] = (b[6]! & 0x0f) | 0x40;
    b[8] = (b[8]! & 0x3f) | 0x80;
    let s = "";
    for (let i = 0; i < 16; i++) {
      if (i === 4 || i === 6 || i === 8 || i === 10) s += "-";
      s += hexDigits[b[i]! >> 4]! + hexDigits[b[i]! & 15]!;
    }
    return s as `${string}-${string}-${string}-${string}-${string}`;
  };
  return { getRandomValues, randomUUID };
}
