/**
 * The ARP neighbour cache (RFC 826, RFC 1122 §2.3.2.1–2): IPv4 → MAC entries that expire,
 * and a bounded queue of packets waiting for a resolution, with request retries. The cache
 * never sends anything itself: it asks its owner through `requestResolution`.
 */

/** Limits and timings of a NeighborCache (milliseconds). */
export interface NeighborCacheOptions {
  /** How long a learned entry stays valid (default 60 s, as smoltcp). */
  entryLifetime?: number;
  /** Entries kept at most; the one closest to expiry is evicted (default 64). */
  maxEntries?: number;
  /** Time between ARP requests for one address (default 1 s, RFC 1122 §2.3.2.1). */
  requestInterval?: number;
  /** Requests sent before queued packets are dropped (default 3). */
  maxRequests?: number;
  /** Packets queued per unresolved address (default 64: a burst of new connections to a
   *  not-yet-resolved gateway must not lose its SYN-ACKs). */
  maxPendingPerNeighbor?: number;
  /** Packets queued over all unresolved addresses (default 128). */
  maxPendingTotal?: number;
}

interface NeighborEntry {
  mac: Uint8Array;
  expiresAt: number;
}

interface PendingResolution {
  /** Whole IPv4 packets (header included) waiting for the MAC. */
  packets: Uint8Array[];
  requestsSent: number;
  nextRequestAt: number;
}

/** What enqueue() did with a packet. */
export type EnqueueResult = "queued" | "neighbor-queue-full";

/** The ARP cache plus the packets waiting on it. */
export class NeighborCache {
  private readonly entries = new Map<number, NeighborEntry>();
  private readonly pending = new Map<number, PendingResolution>();
  private pendingTotal = 0;
  /**
   * No pending resolution is due before this (a lower bound, exact after poll() walked); what
   * pollAt() returns. Public for the interface's event-loop pass, which reads it rather than
   * calling poll() or pollAt() (a call each per pass); written only here.
   */
  nextDueAt = Infinity;
  private readonly entryLifetime: number;
  private readonly maxEntries: number;
  private readonly requestInterval: number;
  private readonly maxRequests: number;
  private readonly maxPendingPerNeighbor: number;
  private readonly maxPendingTotal: number;
  /** Packets dropped because their neighbour never answered. */
  droppedUnresolved = 0;
  /**
   * Moves whenever an entry is removed before it expires (clear(), eviction) or updated, so
   * that a MAC remembered outside (the interface's send path) can be checked without a lookup.
   */
  generation = 0;

  /**
   * `requestResolution(address)` must send an ARP request for `address`;
   * `deliver(address, mac, packet)` sends a queued packet once its MAC is known.
   */
  constructor(
    private readonly requestResolution: (address: number) => void,
    private readonly deliver: (mac: Uint8Array, packet: Uint8Array) => void,
    options: NeighborCacheOptions = {},
  ) {
    this.entryLifetime = options.entryLifetime ?? 60_000;
    this.maxEntries = options.maxEntries ?? 64;
    this.requestInterval = options.requestInterval ?? 1000;
    this.maxRequests = options.maxRequests ?? 3;
    this.maxPendingPerNeighbor = options.maxPendingPerNeighbor ?? 64;
    this.maxPendingTotal = options.maxPendingTotal ?? 128;
  }

  /** The MAC for `address` if a live entry exists (the transmit hot path: one Map lookup). */
  lookup(address: number, now: number): Uint8Array | null {
    const entry = this.entries.get(address);
    return entry !== undefined && entry.expiresAt > now ? entry.mac : null;
  }

  /** When the entry for `address` expires (0 without one): a MAC from lookup() holds until then. */
  expiresAt(address: number): number {
    return this.entries.get(address)?.expiresAt ?? 0;
  }

  /** How many live or stale entries the cache holds. */
  get size(): number { return this.entries.size; }

  /** Packets waiting for any resolution. */
  get pendingPackets(): number { return this.pendingTotal; }

  /**
   * RFC 826 "merge": refreshes an existing entry for `address`, or creates one when `create`
   * (the packet was addressed to us). Flushes packets waiting for it. Returns true when the
   * cache now holds the pair.
   */
  update(address: number, mac: Uint8Array, now: number, create: boolean): boolean {
    let entry = this.entries.get(address);
    if (entry === undefined) {
      if (!create && !this.pending.has(address)) return false;
      if (this.entries.size >= this.maxEntries) this.evictOne();
      entry = { mac: mac.slice(0, 6), expiresAt: now + this.entryLifetime };
      this.entries.set(address, entry);
    } else {
      entry.mac.set(mac.subarray(0, 6));
      entry.expiresAt = now + this.entryLifetime;
      this.generation++; // the MAC may have changed
    }
    const waiting = this.pending.get(address);
    if (waiting !== undefined) {
      this.pending.delete(address);
      if (this.pending.size === 0) this.nextDueAt = Infinity;
      this.pendingTotal -= waiting.packets.length;
      for (const packet of waiting.packets) this.deliver(entry.mac, packet);
    }
    return true;
  }

  /** Starts resolving `address` ahead of need (e.g. the gateway when an address is configured). */
  resolve(address: number, now: number): void {
    if (this.lookup(address, now) !== null || this.pending.has(address)) return;
    if (this.pendingTotal >= this.maxPendingTotal) return;
    this.pending.set(address, { packets: [], requestsSent: 1, nextRequestAt: now + this.requestInterval });
    this.noteDue(now + this.requestInterval);
    this.requestResolution(address);
  }

  /** Queues a whole IPv4 packet for `address`, asking for a resolution if none is in flight. */
  enqueue(address: number, packet: Uint8Array, now: number): EnqueueResult {
    let waiting = this.pending.get(address);
    if (waiting === undefined) {
      if (this.pendingTotal >= this.maxPendingTotal) return "neighbor-queue-full";
      waiting = { packets: [], requestsSent: 1, nextRequestAt: now + this.requestInterval };
      this.pending.set(address, waiting);
      this.noteDue(waiting.nextRequestAt);
      this.requestResolution(address);
    }
    if (waiting.packets.length >= this.maxPendingPerNeighbor || this.pendingTotal >= this.maxPendingTotal) {
      return "neighbor-queue-full";
    }
    waiting.packets.push(packet);
    this.pendingTotal++;
    return "queued";
  }

  /**
   * Retries requests that are due and gives up on addresses that never answered. Returns at
   * once until the earliest retry is due: the event loop calls this on every pass.
   */
  poll(now: number): void {
    if (now < this.nextDueAt) return;
    let next = Infinity;
    for (const [address, waiting] of this.pending) {
      if (waiting.nextRequestAt > now) {
        if (waiting.nextRequestAt < next) next = waiting.nextRequestAt;
        continue;
      }
      if (waiting.requestsSent >= this.maxRequests) {
        this.pending.delete(address);
        this.pendingTotal -= waiting.packets.length;
        this.droppedUnresolved += waiting.packets.length;
        continue;
      }
      waiting.requestsSent++;
      waiting.nextRequestAt = now + this.requestInterval;
      if (waiting.nextRequestAt < next) next = waiting.nextRequestAt;
      this.requestResolution(address);
    }
    this.nextDueAt = next;
  }

  /**
   * The next time poll() has work (Infinity when nothing is being resolved). May be early
   * (another address resolved since), never late: a poll at that time finds the exact one.
   */
  pollAt(): number {
    return this.nextDueAt;
  }

  /** Forgets every entry and drops every queued packet (address change). */
  clear(): void {
    this.entries.clear();
    this.generation++;
    this.droppedUnresolved += this.pendingTotal;
    this.pending.clear();
    this.pendingTotal = 0;
    this.nextDueAt = Infinity;
  }

  private noteDue(at: number): void {
    if (at < this.nextDueAt) this.nextDueAt = at;
  }

  private evictOne(): void {
    let victim = -1;
    let earliest = Infinity;
    for (const [address, entry] of this.entries) {
      if (entry.expiresAt < earliest) { earliest = entry.expiresAt; victim = address; }
    }
    this.entries.delete(victim);
    this.generation++;
  }
}
