/**
 * A stub resolver (RFC 1034 §5.3.1): A queries over UDP to the configured servers, with
 * retransmission across servers, a per-attempt timeout, CNAME chains followed (within the
 * answer, then by re-querying), and a cache that honours the smallest TTL along the chain.
 * lookup() returns a promise; the work happens in poll(now), so tests stay deterministic.
 */
import { parseIpv4 } from "./ip.ts";
import type { UdpLayer, UdpSocket } from "./socket/udp.ts";
import {
  DNS_CLASS_IN, DNS_PORT, DNS_RCODE_NAME_ERROR, DNS_RCODE_NO_ERROR, DNS_TYPE_A, DNS_TYPE_CNAME, emitDnsQuery, parseDns,
} from "./wire/dns.ts";

/** Why a lookup failed. */
export type DnsFailure = "not-found" | "no-address" | "timeout" | "server-failure" | "bad-name" | "no-servers" | "cname-loop";

/** The error a failed lookup rejects with. */
export class DnsLookupError extends Error {
  constructor(readonly hostName: string, readonly reason: DnsFailure) {
    super(`DNS lookup of ${hostName} failed: ${reason}`);
    this.name = "DnsLookupError";
  }
}

/** Tunables of the resolver. */
export interface DnsResolverOptions {
  servers?: number[];
  /** Milliseconds to wait for each answer (default 2000). */
  timeout?: number;
  /** Queries sent per lookup step before giving up, rotating over servers (default 3). */
  attempts?: number;
  /** Names cached at most (default 256; the oldest is evicted). */
  cacheSize?: number;
  /** CNAMEs followed at most (default 8). */
  maxCnameHops?: number;
  /** Uniform random numbers in [0, 1) for query ids and the source port. */
  random?: () => number;
}

/** Counters of the resolver. */
export interface DnsCounters {
  queriesSent: number;
  answers: number;
  cacheHits: number;
  timeouts: number;
  /** Responses ignored: malformed, unknown id, wrong source or question. */
  ignored: number;
}

interface Waiter {
  resolve(addresses: number[]): void;
  reject(error: DnsLookupError): void;
}

interface Query {
  id: number;
  /** The name the caller asked for (cache key). */
  hostName: string;
  /** The name being queried now (differs after a CNAME). */
  queryName: string;
  hops: number;
  /** Smallest TTL seen along the chain, seconds. */
  ttl: number;
  attempts: number;
  server: number;
  deadline: number;
  waiters: Waiter[];
}

interface CacheEntry {
  addresses: number[];
  expiresAt: number;
}

/** The stub resolver. */
export class DnsResolver {
  readonly counters: DnsCounters = { queriesSent: 0, answers: 0, cacheHits: 0, timeouts: 0, ignored: 0 };
  private servers: number[];
  private readonly timeout: number;
  private readonly attempts: number;
  private readonly cacheSize: number;
  private readonly maxCnameHops: number;
  private readonly random: () => number;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly byId = new Map<number, Query>();
  /**
   * No query in flight times out before this (a lower bound, exact after poll() walked).
   * Read directly by the network unit's pass (what pollAt() returns, without a call).
   */
  nextDeadline = Infinity;
  private readonly byName = new Map<string, Query>();
  /** Bound at the first query and kept. */
  private socket: UdpSocket | null = null;
  /** The clock as of the last pass (cache expiry, query deadlines). */
  private now = 0;

  constructor(private readonly udp: UdpLayer, options: DnsResolverOptions = {}) {
    this.servers = options.servers ?? [];
    this.timeout = options.timeout ?? 2000;
    this.attempts = options.attempts ?? 3;
    this.cacheSize = options.cacheSize ?? 256;
    this.maxCnameHops = options.maxCnameHops ?? 8;
    this.random = options.random ?? Math.random;
  }

  /** Replaces the server list (from static configuration or a DHCP lease). */
  setServers(servers: number[]): void {
    this.servers = servers.slice();
  }

  /** Resolves a host name to IPv4 addresses; an address literal resolves to itself. */
  lookup(hostName: string): Promise<number[]> {
    const name = hostName.toLowerCase().replace(/\.$/, "");
    if (/^\d+\.\d+\.\d+\.\d+$/.test(name)) {
      try {
        return Promise.resolve([parseIpv4(name)]);
      } catch {
        return Promise.reject(new DnsLookupError(hostName, "bad-name"));
      }
    }
    const cached = this.cache.get(name);
    if (cached !== undefined) {
      if (cached.expiresAt > this.now) {
        this.counters.cacheHits++;
        return Promise.resolve(cached.addresses.slice());
      }
      this.cache.delete(name);
    }
    return new Promise<number[]>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject };
      const inFlight = this.byName.get(name);
      if (inFlight !== undefined) { inFlight.waiters.push(waiter); return; }
      if (this.servers.length === 0) { reject(new DnsLookupError(hostName, "no-servers")); return; }
      const query: Query = {
        id: 0, hostName: name, queryName: name, hops: 0, ttl: Infinity, attempts: 0,
        server: Math.floor(this.random() * this.servers.length), deadline: Infinity, waiters: [waiter],
      };
      this.byName.set(name, query);
      this.send(query);
    });
  }

  /** Handles answers, then retransmits or fails queries whose time is up. */
  poll(now: number): void {
    this.now = now;
    const socket = this.socket;
    if (socket !== null) {
      for (let datagram = socket.receive(); datagram !== undefined; datagram = socket.receive()) {
        if (datagram.sourcePort !== DNS_PORT) { this.counters.ignored++; continue; }
        this.receive(datagram.source, datagram.data);
      }
    }
    if (now < this.nextDeadline) return;
    let next = Infinity;
    for (const query of this.byId.values()) {
      if (query.deadline > now) {
        if (query.deadline < next) next = query.deadline;
        continue;
      }
      if (query.attempts >= this.attempts) {
        this.counters.timeouts++;
        this.finish(query, new DnsLookupError(query.hostName, "timeout"));
      } else {
        query.server++;
        this.send(query);
        if (query.deadline < next) next = query.deadline;
      }
    }
    this.nextDeadline = next;
  }

  /**
   * The next retransmission deadline (Infinity when nothing is in flight). May be early
   * (another query finished since), never late: a poll at that time finds the exact one.
   */
  pollAt(): number {
    return this.nextDeadline;
  }

  /** Names in the cache (live or not yet evicted). */
  get cachedNames(): number { return this.cache.size; }

  /** Drops every cached answer. */
  flush(): void {
    this.cache.clear();
  }

  private ensureSocket(): UdpSocket {
    if (this.socket === null) {
      // A random source port makes off-path spoofing harder (RFC 5452 §9.2).
      for (let tries = 0; tries < 16 && this.socket === null; tries++) {
        try {
          this.socket = this.udp.bind(this.udp.ephemeralFirst + Math.floor(this.random() * this.udp.ephemeralCount), { queueLimit: 32 });
        } catch {
          // port in use: try another
        }
      }
      this.socket ??= this.udp.bind(0, { queueLimit: 32 });
    }
    return this.socket;
  }

  private send(query: Query): void {
    if (query.id === 0 || this.byId.get(query.id) !== query) {
      let id = 0;
      do id = 1 + Math.floor(this.random() * 0xfffe); while (this.byId.has(id));
      query.id = id;
      this.byId.set(id, query);
    }
    query.attempts++;
    query.deadline = this.now + this.timeout;
    if (query.deadline < this.nextDeadline) this.nextDeadline = query.deadline;
    const bytes = emitDnsQuery(query.id, query.queryName, DNS_TYPE_A);
    if (typeof bytes === "string") { this.finish(query, new DnsLookupError(query.hostName, "bad-name")); return; }
    const server = this.servers[query.server % this.servers.length]!;
    if (this.ensureSocket().sendTo(server, DNS_PORT, bytes)) this.counters.queriesSent++;
  }

  private receive(source: number, bytes: Uint8Array): void {
    const message = parseDns(bytes);
    if (typeof message === "string" || !message.response) { this.counters.ignored++; return; }
    const query = this.byId.get(message.id);
    // RFC 5452 §9.1: accept only the server asked, the id, and the question we sent.
    const question = message.questions[0];
    if (query === undefined || this.servers[query.server % this.servers.length] !== source || question === undefined ||
        question.name.toLowerCase() !== query.queryName || question.type !== DNS_TYPE_A) {
      this.counters.ignored++;
      return;
    }
    this.counters.answers++;
    if (message.rcode === DNS_RCODE_NAME_ERROR) { this.finish(query, new DnsLookupError(query.hostName, "not-found")); return; }
    if (message.rcode !== DNS_RCODE_NO_ERROR || message.truncated) {
      // Another server may do better: retry at once while attempts remain.
      if (query.attempts < this.attempts) { query.server++; this.send(query); }
      else this.finish(query, new DnsLookupError(query.hostName, "server-failure"));
      return;
    }
    // Follow the CNAME chain inside the answer section (RFC 1034 §5.3.3 step 3).
    let name = query.queryName;
    let ttl = query.ttl;
    for (;;) {
      const addresses: number[] = [];
      let alias: string | null = null;
      for (const record of message.answers) {
        if (record.class !== DNS_CLASS_IN || record.name.toLowerCase() !== name) continue;
        if (record.type === DNS_TYPE_A && record.address !== undefined) {
          addresses.push(record.address);
          ttl = Math.min(ttl, record.ttl);
        } else if (record.type === DNS_TYPE_CNAME && record.target !== undefined && alias === null) {
          alias = record.target.toLowerCase();
          ttl = Math.min(ttl, record.ttl);
        }
      }
      if (addresses.length > 0) {
        this.store(query.hostName, addresses, ttl);
        this.finish(query, addresses);
        return;
      }
      if (alias === null) { this.finish(query, new DnsLookupError(query.hostName, "no-address")); return; }
      if (++query.hops > this.maxCnameHops) { this.finish(query, new DnsLookupError(query.hostName, "cname-loop")); return; }
      name = alias;
      // Is the alias answered further down the same message? Otherwise ask for it.
      if (!message.answers.some((record) => record.name.toLowerCase() === name)) {
        this.byId.delete(query.id);
        query.queryName = name;
        query.ttl = ttl;
        query.attempts = 0;
        query.id = 0;
        this.send(query);
        return;
      }
    }
  }

  private store(name: string, addresses: number[], ttl: number): void {
    if (ttl <= 0 || !Number.isFinite(ttl)) return;
    if (this.cache.size >= this.cacheSize) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(name, { addresses: addresses.slice(), expiresAt: this.now + ttl * 1000 });
  }

  private finish(query: Query, outcome: number[] | DnsLookupError): void {
    this.byId.delete(query.id);
    if (this.byId.size === 0) this.nextDeadline = Infinity;
    this.byName.delete(query.hostName);
    for (const waiter of query.waiters) {
      if (outcome instanceof DnsLookupError) waiter.reject(outcome);
      else waiter.resolve(outcome.slice());
    }
  }
}
