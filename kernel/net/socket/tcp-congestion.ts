/**
 * Congestion control, pluggable: the connection owns loss detection and NewReno's recovery
 * bookkeeping (RFC 6582 "recover"), and asks a controller only for the window.
 * The default is NewReno (RFC 5681 §3.1–3.2, RFC 6582 §3.2); CUBIC (RFC 9438) can be
 * added behind the same interface.
 */

/** What a congestion controller decides: the congestion window in bytes. */
export interface CongestionController {
  /** Current congestion window (bytes). */
  readonly window: number;
  /** Slow-start threshold (bytes), for diagnostics. */
  readonly slowStartThreshold: number;
  /** New data acknowledged outside recovery (RFC 5681 §3.1). */
  onAck(bytesAcked: number, maxSegment: number, now: number): void;
  /** Third duplicate ACK: entering fast recovery with `flightSize` bytes outstanding. */
  onFastRetransmit(flightSize: number, maxSegment: number): void;
  /** A further duplicate ACK during fast recovery (window inflation). */
  onDuplicateAckInRecovery(maxSegment: number): void;
  /** A partial ACK during recovery (RFC 6582 §3.2 step 3, partial deflation). */
  onPartialAck(bytesAcked: number, maxSegment: number): void;
  /** A full ACK ends recovery (RFC 6582 §3.2 step 3, full acknowledgment). */
  onRecoveryEnd(flightSize: number, maxSegment: number): void;
  /** Retransmission timeout (RFC 5681 §3.1 eq. 4: ssthresh = max(flight/2, 2·SMSS), cwnd = 1·SMSS). */
  onTimeout(flightSize: number, maxSegment: number): void;
}

/** Makes a fresh controller per connection; `maxSegment` is the connection's SMSS. */
export type CongestionControllerFactory = (maxSegment: number) => CongestionController;

/** NewReno (RFC 5681 + RFC 6582) with the RFC 6928 initial window of 10 segments. */
export class NewRenoController implements CongestionController {
  window: number;
  slowStartThreshold = 0x7fffffff;
  /** Byte counter for congestion avoidance (RFC 5681 §3.1, appropriate byte counting). */
  private bytesAckedInAvoidance = 0;

  constructor(maxSegment: number, initialSegments = 10) {
    this.window = initialSegments * maxSegment;
  }

  onAck(bytesAcked: number, maxSegment: number): void {
    if (this.window < this.slowStartThreshold) {
      this.window += bytesAcked < maxSegment ? bytesAcked : maxSegment; // (not Math.min: a native call per ACK)
    } else {
      this.bytesAckedInAvoidance += bytesAcked;
      if (this.bytesAckedInAvoidance >= this.window) {
        this.bytesAckedInAvoidance -= this.window;
        this.window += maxSegment;
      }
    }
  }

  onFastRetransmit(flightSize: number, maxSegment: number): void {
    this.slowStartThreshold = Math.max(flightSize >> 1, 2 * maxSegment);
    this.window = this.slowStartThreshold + 3 * maxSegment;
  }

  onDuplicateAckInRecovery(maxSegment: number): void {
    this.window += maxSegment;
  }

  onPartialAck(bytesAcked: number, maxSegment: number): void {
    this.window = Math.max(this.window - bytesAcked + maxSegment, maxSegment);
  }

  onRecoveryEnd(flightSize: number, maxSegment: number): void {
    this.window = Math.min(this.slowStartThreshold, Math.max(flightSize, maxSegment) + maxSegment);
  }

  onTimeout(flightSize: number, maxSegment: number): void {
    this.slowStartThreshold = Math.max(flightSize >> 1, 2 * maxSegment);
    this.window = maxSegment;
    this.bytesAckedInAvoidance = 0;
  }
}
