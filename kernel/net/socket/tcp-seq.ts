/**
 * Sequence-number arithmetic modulo 2^32 (RFC 9293 §3.4): comparisons look at the sign of
 * the 32-bit difference, so they hold across wrap-around for distances below 2^31.
 * The TCP hot path (tcp.ts, tcp-connection.ts, tcp-buffers.ts) writes these out inline.
 */

/** a < b in sequence space. */
export function seqLt(a: number, b: number): boolean { return ((a - b) | 0) < 0; }
/** a ≤ b in sequence space. */
export function seqLe(a: number, b: number): boolean { return ((a - b) | 0) <= 0; }
/** a > b in sequence space. */
export function seqGt(a: number, b: number): boolean { return ((a - b) | 0) > 0; }
/** a ≥ b in sequence space. */
export function seqGe(a: number, b: number): boolean { return ((a - b) | 0) >= 0; }
/** a + n as an unsigned 32-bit sequence number. */
export function seqAdd(a: number, n: number): number { return (a + n) >>> 0; }
/** The signed distance a − b (positive when a is after b). */
export function seqDiff(a: number, b: number): number { return (a - b) | 0; }
