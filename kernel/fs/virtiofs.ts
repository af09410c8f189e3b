/**
 * virtio-fs (virtio 1.2 §5.11): a directory shared by the host (QEMU's virtiofsd, started by
 * `torito run --fs DIR`) as a FileSystem for the VFS, which mounts it at /share.
 *
 * Device (§5.11.2): queue 0 is the high-priority queue (we send only BATCH_FORGET there, as
 * the spec asks for FORGET), queue 1 the first request queue; VIRTIO_FS_F_NOTIFICATION is
 * not negotiated, so there is no notification queue. Config (§5.11.4): tag[36] @0,
 * num_request_queues u32 @36. Each request (§5.11.6) is a FUSE request (kernel/fs/fuse.ts):
 * device-readable fuse_in_header + arguments (+ data for WRITE), then device-writable
 * fuse_out_header + result (+ data for READ and READDIRPLUS).
 *
 * Memory and copies. Headers, arguments and fixed-size results live in one DMA block of
 * SLOT_BYTES per request slot. File data never goes through it: READ hands the device the
 * caller's buffer (guest memory is identity mapped) and WRITE hands it the caller's bytes,
 * with header and fuse_write_in as separate descriptors, the shape virtiofsd needs to write
 * straight from guest memory. Requests are split at the negotiated max_write / max_pages and
 * the pieces are all in flight at once (a queue's worth); requests made in one synchronous
 * stretch are published with one notification.
 *
 * Node ids. FUSE names inodes by node id; every LOOKUP, CREATE, MKDIR and READDIRPLUS entry
 * adds one to the server's lookup count, which we must give back with FORGET. Nodes are
 * reference-counted here: a cached path (LRU, at most PATH_CACHE_SIZE, each valid for the
 * server's entry timeout), an open handle and an operation in progress each hold one; when
 * the last goes, the node's whole lookup count is returned in a batched FORGET.
 *
 * Validation. Every reply is checked before use: the used length against fuse_out_header.len,
 * the unique id, the error field's range, the result's size for the opcode, and every
 * directory record. A bad reply fails that request with EIO; the device stays usable. Ring
 * protocol violations (virtqueue.ts) mark the device broken: everything then fails with EIO.
 */
import { hw } from "../hw.ts";
import { claimDevice } from "../devices/index.ts";
import { VirtioDriver } from "../devices/virtio/driver.ts";
import type { VirtioMmioTransport } from "../devices/virtio/mmio.ts";
import type { Virtqueue } from "../devices/virtio/virtqueue.ts";
import { TextEncoder } from "../encoding.ts";
import { FsError } from "./imagefs.ts";
import type { FileHandleOps, FileSystem, FsStat, OpenFlags } from "./types.ts";
import {
  ATTR_OUT, BATCH_FORGET_IN, CREATE_IN, ENTRY_OUT, FATTR_ATIME, FATTR_FH, FATTR_MTIME, FATTR_SIZE,
  FLUSH_IN, FORGET_ONE, FSYNC_IN, FUSE_ASYNC_READ, FUSE_ATOMIC_O_TRUNC, FUSE_BIG_WRITES,
  FUSE_DO_READDIRPLUS, FUSE_GETATTR_FH, FUSE_MAJOR, FUSE_MAX_PAGES, FUSE_MINOR, FUSE_PARALLEL_DIROPS,
  FUSE_ROOT_ID, FuseProtocolError, GETATTR_IN, INIT_IN, INIT_OUT, INIT_OUT_MIN, IN_HEADER, MKDIR_IN,
  NAME_MAX, OPEN_IN, OPEN_OUT, OP_NAMES, OUT_HEADER, O_APPEND, O_CREAT, O_EXCL, O_RDONLY, O_RDWR,
  O_TRUNC, O_WRONLY, Op, READ_IN, RELEASE_IN, RENAME_IN, SETATTR_IN, STATFS_OUT, S_IFDIR, S_IFLNK, S_IFMT,
  S_IFREG, WRITE_IN, WRITE_OUT, errnoCode, parseDirents, readAttrOut, readEntry, readInitOut,
  readStatfs, setU64, u64, writeInHeader, type FuseAttr, type FuseDirent, type FuseEntry, type FuseInitOut,
  type FuseStatfs,
} from "./fuse.ts";

/** Queue indexes (§5.11.2). */
const HIPRIO_QUEUE = 0;
const REQUEST_QUEUE = 1;
/** Config space (§5.11.4). */
const CONFIG_TAG = 0;
const TAG_BYTES = 36;
const CONFIG_NUM_REQUEST_QUEUES = 36;

/** Per request slot: arguments at 0, the reply at REPLY_AT. */
const SLOT_BYTES = 1024;
const REPLY_AT = 768;
const QUEUE_SIZE = 128;
/** Largest single READ/WRITE whatever the server allows (virtiofsd: 1 MiB). */
const MAX_TRANSFER = 1 << 20;
/** Node ids returned per BATCH_FORGET. */
const FORGET_BATCH = 255;
/** Bytes asked for per READDIRPLUS. */
const DIR_BUFFER = 32 * 1024;

/** Tunables of a virtio-fs mount. */
export interface VirtioFsOptions {
  /** Which virtio-fs device (default 0). */
  index?: number;
  /** Most handles open at once; one more open fails with EMFILE (default 256). */
  maxOpenFiles?: number;
  /** Paths whose node id is cached (default 1024). */
  pathCacheSize?: number;
}

/** Counters of one mount, for tests and benchmarks. */
export interface VirtioFsStats {
  requests: number;
  forgets: number;
  forgottenNodes: number;
  malformedReplies: number;
  cachedPaths: number;
  nodes: number;
  openFiles: number;
  notifications: number;
}

const MESSAGES: Record<string, string> = {
  ENOENT: "no such file or directory", EEXIST: "file already exists", ENOTDIR: "not a directory",
  EISDIR: "illegal operation on a directory", ENOTEMPTY: "directory not empty", EACCES: "permission denied",
  EPERM: "operation not permitted", ENOSPC: "no space left on device", EMFILE: "too many open files",
  EBADF: "bad file descriptor", EINVAL: "invalid argument", ENAMETOOLONG: "name too long",
  EXDEV: "cross-device link not permitted", EROFS: "read-only file system", EBUSY: "resource busy or locked",
};

function fsError(code: string, path: string, detail?: string): FsError {
  return new FsError(code, detail ?? MESSAGES[code] ?? code.toLowerCase(), path);
}

/** Where a request's extra data goes: device-readable (WRITE) or device-writable (READ, READDIRPLUS). */
interface Data {
  phys: number;
  length: number;
  toDevice: boolean;
  /** The memory behind `phys`, held until the device is done with it (or the GC may reuse it). */
  owner: ArrayBuffer;
}

/** Pending request bookkeeping per slot. */
interface Waiter {
  resolve: (bodyLength: number) => void;
  reject: (error: Error) => void;
}

/** The virtio-fs device: queues, request slots, reply validation, batched FORGET. */
class VirtioFsDevice extends VirtioDriver {
  readonly tag: string;
  readonly requestQueueCount: number;
  readonly slotView: DataView;
  readonly slotBytes: Uint8Array;
  requests = 0;
  forgets = 0;
  malformedReplies = 0;
  private readonly hiprio: Virtqueue<number>;
  private readonly queue: Virtqueue<number>;
  private readonly slotPhys: number;
  private readonly slotCount: number;
  private readonly unique: Float64Array;
  private readonly opcode: Uint8Array;
  private readonly minReply: Uint32Array;
  private readonly paths: string[];
  private readonly owners: (ArrayBuffer | undefined)[];
  private readonly waiters: (Waiter | undefined)[];
  private readonly freeSlots: number[] = [];
  private readonly slotWaiters: { resolve: (slot: number) => void; reject: (e: Error) => void }[] = [];
  private nextUnique = 1;
  private kickQueued = false;
  private readonly kickFn = (): void => {
    this.kickQueued = false;
    this.queue.kick();
    this.hiprio.kick();
  };
  private readonly completeFn = (slot: number, length: number): void => this.complete(slot, length);
  // BATCH_FORGET: one in flight at a time, the rest accumulate (pairs nodeid, nlookup).
  private readonly forgetView: DataView;
  private readonly forgetPhys: number;
  private readonly forgetPending: number[] = [];
  private forgetInFlight = false;
  private forgetQueued = false;
  private readonly forgetDoneFn = (): void => {
    this.forgetInFlight = false;
    this.flushForgets();
  };

  constructor(transport: VirtioMmioTransport) {
    super(transport, "fs");
    this.negotiate([]);
    const config = transport.readConfig((c) => {
      let tag = "";
      for (let i = 0; i < TAG_BYTES; i++) {
        const b = c.u8(CONFIG_TAG + i);
        if (b === 0) break;
        tag += String.fromCharCode(b);
      }
      return { tag, queues: c.u32(CONFIG_NUM_REQUEST_QUEUES) };
    });
    this.tag = config.tag;
    this.requestQueueCount = config.queues;
    if (config.queues < 1) throw new Error(`${this.name}: num_request_queues is ${config.queues}`);
    this.hiprio = this.createQueue(HIPRIO_QUEUE, 16, 1);
    this.queue = this.createQueue(REQUEST_QUEUE, QUEUE_SIZE, 4);
    // Without indirect descriptors a request takes up to 4 ring entries.
    const n = this.queue.indirect ? this.queue.size : Math.floor(this.queue.size / 4);
    this.slotCount = n;
    const dma = hw.dmaAlloc(n * SLOT_BYTES, 4096);
    this.slotView = new DataView(dma.buffer);
    this.slotBytes = new Uint8Array(dma.buffer);
    this.slotPhys = dma.phys;
    this.unique = new Float64Array(n);
    this.opcode = new Uint8Array(n);
    this.minReply = new Uint32Array(n);
    this.paths = new Array<string>(n).fill("");
    this.waiters = new Array<Waiter | undefined>(n).fill(undefined);
    this.owners = new Array<ArrayBuffer | undefined>(n).fill(undefined);
    for (let i = n - 1; i >= 0; i--) this.freeSlots.push(i);
    const forget = hw.dmaAlloc(IN_HEADER + BATCH_FORGET_IN + FORGET_ONE * FORGET_BATCH, 64);
    this.forgetView = new DataView(forget.buffer);
    this.forgetPhys = forget.phys;
    transport.driverOk();
  }

  /** Byte offset of `slot`'s argument area in slotView. */
  argsAt(slot: number): number {
    return slot * SLOT_BYTES + IN_HEADER;
  }

  /** Byte offset of `slot`'s result (after fuse_out_header) in slotView. */
  replyAt(slot: number): number {
    return slot * SLOT_BYTES + REPLY_AT + OUT_HEADER;
  }

  /** Waits for a free request slot. */
  acquire(): Promise<number> {
    if (this.broken !== null) return Promise.reject(fsError("EIO", "", this.broken.message));
    const slot = this.freeSlots.pop();
    if (slot !== undefined) return Promise.resolve(slot);
    return new Promise((resolve, reject) => this.slotWaiters.push({ resolve, reject }));
  }

  /** Returns a slot taken by acquire() (after its reply was read). */
  release(slot: number): void {
    const next = this.slotWaiters.shift();
    if (next !== undefined) next.resolve(slot);
    else this.freeSlots.push(slot);
  }

  /**
   * Sends the request whose `argsLength` argument bytes are already at argsAt(slot); resolves
   * with the length of the result (after fuse_out_header) once validated, at least
   * `minReply` bytes; the fixed part is at replyAt(slot). Rejects with FsError naming `path`.
   */
  send(slot: number, opcode: number, nodeid: number, argsLength: number, replyBytes: number, minReply: number, path: string, data: Data | null = null): Promise<number> {
    if (this.broken !== null) return Promise.reject(fsError("EIO", path, this.broken.message));
    const base = slot * SLOT_BYTES;
    const unique = this.nextUnique++;
    const outLength = data !== null && data.toDevice ? data.length : 0;
    writeInHeader(this.slotView, base, IN_HEADER + argsLength + outLength, opcode, unique, nodeid);
    // A reply the device never writes must not look like a valid one.
    this.slotView.setUint32(base + REPLY_AT, 0, true);
    setU64(this.slotView, base + REPLY_AT + 8, 0);
    this.unique[slot] = unique;
    this.opcode[slot] = opcode;
    this.minReply[slot] = minReply;
    this.paths[slot] = path;
    this.owners[slot] = data?.owner;
    const vq = this.queue;
    const phys = this.slotPhys + base;
    if (outLength > 0) {
      // virtiofsd reads WRITE data in place only when header and fuse_write_in are separate descriptors.
      vq.addOut(phys, IN_HEADER);
      if (argsLength > 0) vq.addOut(phys + IN_HEADER, argsLength);
      vq.addOut(data!.phys, outLength);
    } else {
      vq.addOut(phys, IN_HEADER + argsLength);
    }
    vq.addIn(phys + REPLY_AT, OUT_HEADER + replyBytes);
    if (data !== null && !data.toDevice && data.length > 0) vq.addIn(data.phys, data.length);
    const promise = new Promise<number>((resolve, reject) => {
      this.waiters[slot] = { resolve, reject };
    });
    vq.submit(slot); // cannot fail: there are no more slots than ring entries
    this.requests++;
    this.queueKick();
    this.startPolling();
    return promise;
  }

  private queueKick(): void {
    if (!this.kickQueued) {
      this.kickQueued = true;
      queueMicrotask(this.kickFn);
    }
  }

  /** Validates the reply in `slot` (§5.11.6.1: fuse_out_header, then the result). */
  private complete(slot: number, used: number): void {
    const waiter = this.waiters[slot];
    this.waiters[slot] = undefined;
    this.owners[slot] = undefined;
    if (waiter === undefined) return;
    const v = this.slotView;
    const at = slot * SLOT_BYTES + REPLY_AT;
    const length = v.getUint32(at, true);
    const error = v.getInt32(at + 4, true);
    const unique = u64(v, at + 8);
    const op = OP_NAMES[this.opcode[slot]!] ?? "request";
    const path = this.paths[slot]!;
    let problem = "";
    if (used < OUT_HEADER) problem = `the device wrote ${used} bytes, less than fuse_out_header`;
    else if (length < OUT_HEADER || length > used) problem = `fuse_out_header.len ${length} but the device wrote ${used} bytes`;
    else if (unique !== this.unique[slot]) problem = `unique ${unique}, expected ${this.unique[slot]}`;
    else if (error > 0 || error < -4095) problem = `error field ${error}`;
    else if (error === 0 && length - OUT_HEADER < this.minReply[slot]!) problem = `result of ${length - OUT_HEADER} bytes, expected at least ${this.minReply[slot]}`;
    if (problem !== "") {
      this.malformedReplies++;
      waiter.reject(fsError("EIO", path, `malformed virtio-fs ${op} reply: ${problem}`));
    } else if (error < 0) {
      const code = errnoCode(-error);
      waiter.reject(fsError(code, path, MESSAGES[code] ?? `${op} failed with errno ${-error}`));
    } else {
      waiter.resolve(length - OUT_HEADER);
    }
  }

  /** Queues FORGET of `nlookup` lookups of `nodeid` (sent in batches on the hiprio queue). */
  forget(nodeid: number, nlookup: number): void {
    if (nlookup <= 0 || this.broken !== null) return;
    this.forgetPending.push(nodeid, nlookup);
    if (!this.forgetQueued) {
      this.forgetQueued = true;
      queueMicrotask(() => {
        this.forgetQueued = false;
        this.flushForgets();
      });
    }
  }

  private flushForgets(): void {
    if (this.forgetInFlight || this.forgetPending.length === 0 || this.broken !== null) return;
    const count = Math.min(FORGET_BATCH, this.forgetPending.length / 2);
    const v = this.forgetView;
    const length = IN_HEADER + BATCH_FORGET_IN + FORGET_ONE * count;
    writeInHeader(v, 0, length, Op.BATCH_FORGET, this.nextUnique++, 0);
    v.setUint32(IN_HEADER, count, true);
    v.setUint32(IN_HEADER + 4, 0, true);
    for (let i = 0; i < count; i++) {
      const at = IN_HEADER + BATCH_FORGET_IN + FORGET_ONE * i;
      setU64(v, at, this.forgetPending[2 * i]!);
      setU64(v, at + 8, this.forgetPending[2 * i + 1]!);
    }
    this.forgetPending.splice(0, 2 * count);
    // FORGET has no reply (§5.11.6.1): the buffer comes back with nothing written.
    this.hiprio.addOut(this.forgetPhys, length);
    this.hiprio.submit(0);
    this.forgetInFlight = true;
    this.forgets++;
    this.queueKick();
    this.startPolling();
  }

  protected service(): boolean {
    const a = this.queue.poll(this.completeFn);
    const b = this.hiprio.poll(this.forgetDoneFn);
    return a + b > 0;
  }

  protected busy(): boolean {
    return this.queue.inFlight > 0 || this.hiprio.inFlight > 0;
  }

  protected rejectAll(error: Error): void {
    for (let slot = 0; slot < this.slotCount; slot++) {
      const w = this.waiters[slot];
      this.waiters[slot] = undefined;
      this.owners[slot] = undefined;
      w?.reject(fsError("EIO", this.paths[slot]!, error.message));
    }
    for (const w of this.slotWaiters.splice(0)) w.reject(fsError("EIO", "", error.message));
  }
}

/** A node id the server gave us, with its lookup count and who holds it. */
interface Node {
  id: number;
  /** Lookups the server counted for this node (given back by FORGET). */
  nlookup: number;
  /** Cached paths, open handles and operations in progress using it. */
  refs: number;
  attr: FuseAttr;
  /** hw.now() until which `attr` may be used without GETATTR. */
  attrUntil: number;
}

interface PathEntry {
  node: Node;
  /** hw.now() until which the name → node binding holds. */
  until: number;
}

/** FsStat over a fuse_attr. */
class VirtioFsStat implements FsStat {
  readonly size: number;
  readonly mtimeMs: number;
  readonly mode: number;
  readonly ino: number;
  constructor(attr: FuseAttr) {
    this.size = attr.size;
    this.mtimeMs = attr.mtimeMs;
    this.mode = attr.mode;
    this.ino = attr.ino;
  }
  isFile(): boolean {
    return (this.mode & S_IFMT) === S_IFREG;
  }
  isDirectory(): boolean {
    return (this.mode & S_IFMT) === S_IFDIR;
  }
  isSymbolicLink(): boolean {
    return (this.mode & S_IFMT) === S_IFLNK;
  }
}

const isDir = (attr: FuseAttr): boolean => (attr.mode & S_IFMT) === S_IFDIR;
const encoder = new TextEncoder();

function split(path: string): [parent: string, name: string] {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? ["", path] : [path.slice(0, slash), path.slice(slash + 1)];
}

/** A virtio-fs share as a FileSystem (see the module comment). */
export class VirtioFs implements FileSystem {
  readonly readOnly = false;
  /** Negotiated at INIT; 0 before the first operation. */
  maxWrite = 0;
  maxRead = 0;
  private readonly transport: VirtioMmioTransport;
  private device: VirtioFsDevice | null = null;
  private ready: Promise<void> | null = null;
  private init: FuseInitOut | null = null;
  private readdirPlus = false;
  private readonly maxOpenFiles: number;
  private readonly pathCacheSize: number;
  private readonly nodes = new Map<number, Node>();
  private readonly pathCache = new Map<string, PathEntry>();
  private readonly root: Node;
  private readonly handles = new Set<VirtioFsFile>();
  private forgottenNodes = 0;

  constructor(transport: VirtioMmioTransport, options: VirtioFsOptions = {}) {
    this.transport = transport;
    this.maxOpenFiles = options.maxOpenFiles ?? 256;
    this.pathCacheSize = options.pathCacheSize ?? 1024;
    const attr: FuseAttr = { ino: 1, size: 0, blocks: 0, mtimeMs: 0, mode: S_IFDIR | 0o755, nlink: 2, uid: 0, gid: 0 };
    // The root is never forgotten (FUSE_ROOT_ID has an implicit lookup).
    this.root = { id: FUSE_ROOT_ID, nlookup: 0, refs: 1, attr, attrUntil: 0 };
  }

  /** The device's tag (§5.11.4), after the first operation; "" before. */
  get tag(): string {
    return this.device?.tag ?? "";
  }

  /** What INIT negotiated (null before the first operation). */
  get negotiated(): FuseInitOut | null {
    return this.init;
  }

  /** Counters, for tests and benchmarks. */
  stats(): VirtioFsStats {
    const d = this.device;
    return {
      requests: d?.requests ?? 0, forgets: d?.forgets ?? 0, forgottenNodes: this.forgottenNodes,
      malformedReplies: d?.malformedReplies ?? 0, cachedPaths: this.pathCache.size, nodes: this.nodes.size,
      openFiles: this.handles.size, notifications: d?.notifications() ?? 0,
    };
  }

  /** Starts the driver and sends FUSE_INIT, once (the mount itself costs nothing). */
  private start(): Promise<VirtioFsDevice> {
    if (this.device !== null && this.init !== null) return Promise.resolve(this.device);
    this.ready ??= (async () => {
      let device: VirtioFsDevice;
      try {
        device = new VirtioFsDevice(this.transport);
      } catch (e) {
        this.transport.fail();
        throw fsError("EIO", "", `virtio-fs device unusable: ${(e as Error).message}`);
      }
      this.device = device;
      const slot = await device.acquire();
      try {
        const v = device.slotView;
        const at = device.argsAt(slot);
        // fuse_init_in: major@0 minor@4 max_readahead@8 flags@12.
        v.setUint32(at, FUSE_MAJOR, true);
        v.setUint32(at + 4, FUSE_MINOR, true);
        v.setUint32(at + 8, MAX_TRANSFER, true);
        v.setUint32(at + 12, FUSE_ASYNC_READ | FUSE_ATOMIC_O_TRUNC | FUSE_BIG_WRITES | FUSE_DO_READDIRPLUS | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES, true);
        const length = await device.send(slot, Op.INIT, 0, INIT_IN, INIT_OUT, INIT_OUT_MIN, "");
        const init = readInitOut(v, device.replyAt(slot), length);
        if (init.major !== FUSE_MAJOR) throw fsError("EIO", "", `virtio-fs server speaks FUSE ${init.major}.${init.minor}, not 7.x`);
        const pages = (init.flags & FUSE_MAX_PAGES) !== 0 && init.maxPages > 0 ? init.maxPages : 32;
        this.maxWrite = Math.max(4096, Math.min(MAX_TRANSFER, init.maxWrite));
        this.maxRead = Math.max(4096, Math.min(MAX_TRANSFER, pages * 4096));
        this.readdirPlus = (init.flags & FUSE_DO_READDIRPLUS) !== 0;
        this.init = init;
      } finally {
        device.release(slot);
      }
    })();
    return this.ready.then(() => this.device!);
  }

  /**
   * One request: `fill` writes the arguments at `at` and returns their length; `parse` reads
   * the result (`length` bytes at `at`, plus `data` for READ-like requests) before the slot
   * is reused.
   */
  private async call<T>(opcode: number, nodeid: number, path: string, replyBytes: number, minReply: number,
    fill: (v: DataView, at: number, bytes: Uint8Array) => number, parse: (v: DataView, at: number, length: number) => T,
    data: Data | null = null): Promise<T> {
    const device = await this.start();
    const slot = await device.acquire();
    try {
      const argsLength = fill(device.slotView, device.argsAt(slot), device.slotBytes);
      const length = await device.send(slot, opcode, nodeid, argsLength, replyBytes, minReply, path, data);
      return parse(device.slotView, device.replyAt(slot), length);
    } finally {
      device.release(slot);
    }
  }

  // ---- node ids and the path cache -------------------------------------------------------

  private unref(node: Node): void {
    if (node === this.root) return;
    if (--node.refs > 0) return;
    if (this.nodes.get(node.id) === node) this.nodes.delete(node.id);
    this.forgottenNodes++;
    this.device?.forget(node.id, node.nlookup);
  }

  /** Records a server entry (one more lookup of its node) under `path`; returns the node with a ref for the caller. */
  private remember(path: string, entry: FuseEntry): Node {
    let node = this.nodes.get(entry.nodeid);
    if (node === undefined) {
      node = { id: entry.nodeid, nlookup: 0, refs: 0, attr: entry.attr, attrUntil: 0 };
      this.nodes.set(node.id, node);
    }
    node.nlookup++;
    node.attr = entry.attr;
    node.attrUntil = hw.now() + entry.attrValidMs;
    node.refs++; // the caller's
    const until = hw.now() + entry.entryValidMs;
    const old = this.pathCache.get(path);
    if (old !== undefined) {
      this.pathCache.delete(path);
      if (old.node !== node) {
        node.refs++;
        this.unref(old.node);
      }
      this.pathCache.set(path, { node, until });
      return node;
    }
    node.refs++; // the cache's
    this.pathCache.set(path, { node, until });
    if (this.pathCache.size > this.pathCacheSize) {
      // Evict the least recently used entry (Map keeps insertion order; hits re-insert).
      const [oldestPath, oldest] = this.pathCache.entries().next().value as [string, PathEntry];
      this.pathCache.delete(oldestPath);
      this.unref(oldest.node);
    }
    return node;
  }

  /** Drops `path` and everything below it from the cache (after unlink, rmdir, rename). */
  private forgetPath(path: string): void {
    const prefix = path + "/";
    for (const [p, e] of this.pathCache) {
      if (p === path || p.startsWith(prefix)) {
        this.pathCache.delete(p);
        this.unref(e.node);
      }
    }
  }

  /** The node of `path`, with a ref the caller must unref(). */
  private async resolve(path: string): Promise<Node> {
    if (path === "") {
      await this.start();
      return this.root;
    }
    const hit = this.pathCache.get(path);
    if (hit !== undefined && hit.until > hw.now()) {
      this.pathCache.delete(path); // LRU: move to the end
      this.pathCache.set(path, hit);
      hit.node.refs++;
      return hit.node;
    }
    const [parentPath, name] = split(path);
    const parent = await this.resolve(parentPath);
    try {
      const entry = await this.call(Op.LOOKUP, parent.id, path, ENTRY_OUT, ENTRY_OUT,
        (_v, at, bytes) => this.writeName(bytes, at, name, path), (v, at) => readEntry(v, at));
      if (entry.nodeid === 0) throw fsError("ENOENT", path); // a negative entry
      return this.remember(path, entry);
    } finally {
      this.unref(parent);
    }
  }

  /** Writes `name` NUL-terminated at `at`; returns the bytes used. */
  private writeName(bytes: Uint8Array, at: number, name: string, path: string): number {
    if (name === "" || name === "." || name === ".." || name.includes("/")) throw fsError("EINVAL", path, "invalid file name");
    const { read, written } = encoder.encodeInto(name, bytes.subarray(at, at + NAME_MAX));
    if (read < name.length || written > NAME_MAX) throw fsError("ENAMETOOLONG", path);
    bytes[at + written] = 0;
    return written + 1;
  }

  private async attrOf(node: Node, path: string): Promise<FuseAttr> {
    if (node.attrUntil > hw.now()) return node.attr;
    const out = await this.call(Op.GETATTR, node.id, path, ATTR_OUT, ATTR_OUT, (v, at) => {
      v.setUint32(at, 0, true);
      v.setUint32(at + 4, 0, true);
      setU64(v, at + 8, 0);
      return GETATTR_IN;
    }, (v, at) => readAttrOut(v, at));
    this.updateAttr(node, out.attr, out.attrValidMs);
    return out.attr;
  }

  private updateAttr(node: Node, attr: FuseAttr, validMs: number): void {
    node.attr = attr;
    node.attrUntil = hw.now() + validMs;
  }

  // ---- FileSystem ------------------------------------------------------------------------

  async stat(path: string): Promise<FsStat> {
    const node = await this.resolve(path);
    try {
      return new VirtioFsStat(await this.attrOf(node, path));
    } finally {
      this.unref(node);
    }
  }

  async readdir(path: string): Promise<string[]> {
    const node = await this.resolve(path);
    try {
      if (node !== this.root && node.attrUntil > hw.now() && !isDir(node.attr)) throw fsError("ENOTDIR", path);
      const fh = await this.openNode(Op.OPENDIR, node, O_RDONLY, path);
      const names: string[] = [];
      try {
        const buffer = new Uint8Array(DIR_BUFFER);
        const phys = hw.physAddr(buffer.buffer);
        const opcode = this.readdirPlus ? Op.READDIRPLUS : Op.READDIR;
        let offset = 0;
        for (;;) {
          const length = await this.call(opcode, node.id, path, 0, 0,
            (v, at) => this.fillRead(v, at, fh, offset, DIR_BUFFER, O_RDONLY), (_v, _at, n) => n,
            { phys, length: DIR_BUFFER, toDevice: false, owner: buffer.buffer });
          if (length === 0) break;
          let records: FuseDirent[];
          try {
            records = parseDirents(buffer, length, this.readdirPlus);
          } catch (e) {
            if (e instanceof FuseProtocolError) throw fsError("EIO", path, `malformed virtio-fs directory listing: ${e.message}`);
            throw e;
          }
          if (records.length === 0) break;
          for (const r of records) {
            if (r.name === "." || r.name === "..") continue;
            names.push(r.name);
            // READDIRPLUS took a lookup for each entry: keep it in the cache (or give it back).
            if (r.entry !== null) this.unref(this.remember(path === "" ? r.name : `${path}/${r.name}`, r.entry));
          }
          offset = records[records.length - 1]!.offset;
        }
      } finally {
        await this.releaseHandle(Op.RELEASEDIR, node, fh, O_RDONLY, path).catch(() => undefined);
      }
      return names.sort();
    } finally {
      this.unref(node);
    }
  }

  /** fuse_read_in (also READDIR's): fh@0 offset@8 size@16 read_flags@20 lock_owner@24 flags@32. */
  private fillRead(v: DataView, at: number, fh: number, offset: number, size: number, flags: number): number {
    setU64(v, at, fh);
    setU64(v, at + 8, offset);
    v.setUint32(at + 16, size, true);
    v.setUint32(at + 20, 0, true);
    setU64(v, at + 24, 0);
    v.setUint32(at + 32, flags, true);
    v.setUint32(at + 36, 0, true);
    return READ_IN;
  }

  private openNode(opcode: number, node: Node, flags: number, path: string): Promise<number> {
    return this.call(opcode, node.id, path, OPEN_OUT, OPEN_OUT, (v, at) => {
      v.setUint32(at, flags, true);
      v.setUint32(at + 4, 0, true);
      return OPEN_IN;
    }, (v, at) => u64(v, at));
  }

  private releaseHandle(opcode: number, node: Node, fh: number, flags: number, path: string): Promise<void> {
    return this.call(opcode, node.id, path, 0, 0, (v, at) => {
      setU64(v, at, fh);
      v.setUint32(at + 8, flags, true);
      v.setUint32(at + 12, 0, true);
      setU64(v, at + 16, 0);
      return RELEASE_IN;
    }, () => undefined);
  }

  async open(path: string, flags: OpenFlags, mode: number): Promise<FileHandleOps> {
    if (this.handles.size >= this.maxOpenFiles) throw fsError("EMFILE", path);
    const writable = flags.write || flags.append;
    let openFlags = flags.read && writable ? O_RDWR : writable ? O_WRONLY : O_RDONLY;
    if (flags.append) openFlags |= O_APPEND;
    if (flags.truncate && writable) openFlags |= O_TRUNC;
    let node: Node;
    let fh: number;
    if (flags.create) {
      if (path === "") throw fsError("EISDIR", path);
      const [parentPath, name] = split(path);
      const parent = await this.resolve(parentPath);
      const createFlags = openFlags | O_CREAT | (flags.exclusive ? O_EXCL : 0);
      try {
        // fuse_create_in: flags@0 mode@4 umask@8 open_flags@12, then the name; reply entry + open.
        const r = await this.call(Op.CREATE, parent.id, path, ENTRY_OUT + OPEN_OUT, ENTRY_OUT + OPEN_OUT, (v, at, bytes) => {
          v.setUint32(at, createFlags, true);
          v.setUint32(at + 4, S_IFREG | (mode & 0o7777), true);
          v.setUint32(at + 8, 0, true);
          v.setUint32(at + 12, 0, true);
          return CREATE_IN + this.writeName(bytes, at + CREATE_IN, name, path);
        }, (v, at) => ({ entry: readEntry(v, at), fh: u64(v, at + ENTRY_OUT) }));
        node = this.remember(path, r.entry);
        fh = r.fh;
      } finally {
        this.unref(parent);
      }
      if (isDir(node.attr)) {
        this.unref(node);
        throw fsError("EISDIR", path);
      }
    } else {
      node = await this.resolve(path);
      try {
        if (node === this.root || isDir(await this.attrOf(node, path))) throw fsError("EISDIR", path);
        fh = await this.openNode(Op.OPEN, node, openFlags, path);
      } catch (e) {
        this.unref(node);
        throw e;
      }
    }
    if ((openFlags & O_TRUNC) !== 0 && (this.init!.flags & FUSE_ATOMIC_O_TRUNC) === 0) {
      await this.setattr(node, path, FATTR_SIZE | FATTR_FH, fh, 0, 0, 0).catch(() => undefined);
    }
    if (writable) node.attrUntil = 0;
    const handle = new VirtioFsFile(this, node, fh, openFlags, path);
    this.handles.add(handle);
    return handle;
  }

  async mkdir(path: string, mode: number): Promise<void> {
    if (path === "") throw fsError("EEXIST", path);
    const [parentPath, name] = split(path);
    const parent = await this.resolve(parentPath);
    try {
      const entry = await this.call(Op.MKDIR, parent.id, path, ENTRY_OUT, ENTRY_OUT, (v, at, bytes) => {
        v.setUint32(at, S_IFDIR | (mode & 0o7777), true);
        v.setUint32(at + 4, 0, true);
        return MKDIR_IN + this.writeName(bytes, at + MKDIR_IN, name, path);
      }, (v, at) => readEntry(v, at));
      this.unref(this.remember(path, entry));
      parent.attrUntil = 0;
    } finally {
      this.unref(parent);
    }
  }

  unlink(path: string): Promise<void> {
    return this.removeName(Op.UNLINK, path);
  }

  rmdir(path: string): Promise<void> {
    return this.removeName(Op.RMDIR, path);
  }

  private async removeName(opcode: number, path: string): Promise<void> {
    if (path === "") throw fsError(opcode === Op.RMDIR ? "EBUSY" : "EISDIR", path);
    const [parentPath, name] = split(path);
    const parent = await this.resolve(parentPath);
    try {
      // virtiofsd finds the victim in its inode table and answers EIO when we never looked it up.
      const victim = await this.resolve(path);
      try {
        await this.call(opcode, parent.id, path, 0, 0, (_v, at, bytes) => this.writeName(bytes, at, name, path), () => undefined);
        parent.attrUntil = 0;
      } finally {
        this.forgetPath(path);
        this.unref(victim);
      }
    } finally {
      this.unref(parent);
    }
  }

  /** The node of `path` with a ref, or null when it does not exist. */
  private async resolveIfExists(path: string): Promise<Node | null> {
    try {
      return await this.resolve(path);
    } catch (e) {
      if ((e as FsError).code === "ENOENT") return null;
      throw e;
    }
  }

  async rename(from: string, to: string): Promise<void> {
    if (from === "" || to === "") throw fsError("EBUSY", from === "" ? from : to);
    if (to === from) return;
    if (to.startsWith(from + "/")) throw fsError("EINVAL", to, "cannot move a directory into itself");
    const [fromParentPath, fromName] = split(from);
    const [toParentPath, toName] = split(to);
    const fromParent = await this.resolve(fromParentPath);
    try {
      const toParent = await this.resolve(toParentPath);
      // As for unlink: virtiofsd wants both names looked up (the target only if it exists).
      let source: Node | null = null;
      let target: Node | null = null;
      try {
        source = await this.resolve(from);
        target = await this.resolveIfExists(to);
        // fuse_rename_in: newdir@0, then the old and the new name.
        await this.call(Op.RENAME, fromParent.id, from, 0, 0, (v, at, bytes) => {
          setU64(v, at, toParent.id);
          const a = this.writeName(bytes, at + RENAME_IN, fromName, from);
          return RENAME_IN + a + this.writeName(bytes, at + RENAME_IN + a, toName, to);
        }, () => undefined);
        fromParent.attrUntil = 0;
        toParent.attrUntil = 0;
      } finally {
        this.forgetPath(from);
        this.forgetPath(to);
        if (source !== null) this.unref(source);
        if (target !== null) this.unref(target);
        this.unref(toParent);
      }
    } finally {
      this.unref(fromParent);
    }
  }

  async syncAll(): Promise<void> {
    const writes: Promise<void>[] = [];
    for (const h of this.handles) if (h.dirty) writes.push(h.sync());
    await Promise.all(writes);
  }

  async statfs(): Promise<{ blockSize: number; blocks: number; freeBlocks: number; files: number; freeFiles: number }> {
    const s: FuseStatfs = await this.call(Op.STATFS, FUSE_ROOT_ID, "", STATFS_OUT, STATFS_OUT, () => 0, (v, at) => readStatfs(v, at));
    return { blockSize: s.blockSize, blocks: s.blocks, freeBlocks: s.availableBlocks, files: s.files, freeFiles: s.freeFiles };
  }

  /** Sets a file's access and modification times (SETATTR with FATTR_ATIME | FATTR_MTIME). */
  async utimes(path: string, atimeMs: number, mtimeMs: number): Promise<void> {
    const node = await this.resolve(path);
    try {
      await this.setattr(node, path, FATTR_ATIME | FATTR_MTIME, 0, 0, atimeMs, mtimeMs);
    } finally {
      this.unref(node);
    }
  }

  // ---- what file handles use -------------------------------------------------------------

  /** fuse_setattr_in: valid@0 fh@8 size@16 lock_owner@24 atime@32 mtime@40 ctime@48 atimensec@56 mtimensec@60 ... */
  async setattr(node: Node, path: string, valid: number, fh: number, size: number, atimeMs: number, mtimeMs: number): Promise<FuseAttr> {
    const out = await this.call(Op.SETATTR, node.id, path, ATTR_OUT, ATTR_OUT, (v, at) => {
      new Uint8Array(v.buffer, v.byteOffset + at, SETATTR_IN).fill(0);
      v.setUint32(at, valid, true);
      setU64(v, at + 8, fh);
      setU64(v, at + 16, size);
      setU64(v, at + 32, Math.floor(atimeMs / 1000));
      setU64(v, at + 40, Math.floor(mtimeMs / 1000));
      v.setUint32(at + 56, Math.round((atimeMs % 1000) * 1e6), true);
      v.setUint32(at + 60, Math.round((mtimeMs % 1000) * 1e6), true);
      return SETATTR_IN;
    }, (v, at) => readAttrOut(v, at));
    this.updateAttr(node, out.attr, out.attrValidMs);
    return out.attr;
  }

  /** GETATTR through an open handle. */
  async handleAttr(node: Node, fh: number, path: string): Promise<FuseAttr> {
    const out = await this.call(Op.GETATTR, node.id, path, ATTR_OUT, ATTR_OUT, (v, at) => {
      v.setUint32(at, FUSE_GETATTR_FH, true);
      v.setUint32(at + 4, 0, true);
      setU64(v, at + 8, fh);
      return GETATTR_IN;
    }, (v, at) => readAttrOut(v, at));
    this.updateAttr(node, out.attr, out.attrValidMs);
    return out.attr;
  }

  /** One READ of at most maxRead bytes straight into guest memory at `phys`. */
  readChunk(node: Node, fh: number, flags: number, owner: ArrayBuffer, phys: number, length: number, position: number, path: string): Promise<number> {
    return this.call(Op.READ, node.id, path, 0, 0, (v, at) => this.fillRead(v, at, fh, position, length, flags),
      (_v, _at, n) => n, { phys, length, toDevice: false, owner });
  }

  /** One WRITE of at most maxWrite bytes straight from guest memory at `phys`. */
  writeChunk(node: Node, fh: number, flags: number, owner: ArrayBuffer, phys: number, length: number, position: number, path: string): Promise<number> {
    return this.call(Op.WRITE, node.id, path, WRITE_OUT, WRITE_OUT, (v, at) => {
      // fuse_write_in: fh@0 offset@8 size@16 write_flags@20 lock_owner@24 flags@32.
      setU64(v, at, fh);
      setU64(v, at + 8, position);
      v.setUint32(at + 16, length, true);
      v.setUint32(at + 20, 0, true);
      setU64(v, at + 24, 0);
      v.setUint32(at + 32, flags, true);
      v.setUint32(at + 36, 0, true);
      return WRITE_IN;
    }, (v, at) => {
      const n = v.getUint32(at, true);
      if (n > length) throw fsError("EIO", path, `malformed virtio-fs WRITE reply: ${n} bytes written of ${length}`);
      return n;
    }, { phys, length, toDevice: true, owner });
  }

  /** FLUSH (when written) and RELEASE of a handle, then drops its node. */
  async closeHandle(handle: VirtioFsFile, node: Node, fh: number, flags: number, path: string, flush: boolean): Promise<void> {
    this.handles.delete(handle);
    try {
      if (flush) {
        await this.call(Op.FLUSH, node.id, path, 0, 0, (v, at) => {
          setU64(v, at, fh);
          v.setUint32(at + 8, 0, true);
          v.setUint32(at + 12, 0, true);
          setU64(v, at + 16, 0);
          return FLUSH_IN;
        }, () => undefined);
      }
    } finally {
      try {
        await this.releaseHandle(Op.RELEASE, node, fh, flags, path);
      } finally {
        this.unref(node);
      }
    }
  }

  /** FSYNC of a handle. */
  fsync(node: Node, fh: number, path: string): Promise<void> {
    return this.call(Op.FSYNC, node.id, path, 0, 0, (v, at) => {
      setU64(v, at, fh);
      v.setUint32(at + 8, 0, true);
      v.setUint32(at + 12, 0, true);
      return FSYNC_IN;
    }, () => undefined);
  }
}

/** An open file of a virtio-fs share. */
class VirtioFsFile implements FileHandleOps {
  /** Written since the last sync(). */
  dirty = false;
  private closed = false;
  private written = false;

  constructor(private readonly fs: VirtioFs, private readonly node: Node, private readonly fh: number,
    private readonly flags: number, private readonly path: string) {}

  private check(buffer: Uint8Array, offset: number, length: number, position: number): void {
    if (this.closed) throw fsError("EBADF", this.path);
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > buffer.byteLength) {
      throw fsError("EINVAL", this.path, `offset ${offset} + length ${length} outside a ${buffer.byteLength}-byte buffer`);
    }
    if (!Number.isInteger(position) || position < 0) throw fsError("EINVAL", this.path, `bad position ${position}`);
  }

  async read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    this.check(buffer, offset, length, position);
    if ((this.flags & 3) === O_WRONLY) throw fsError("EBADF", this.path);
    if (length === 0) return 0;
    const owner = buffer.buffer as ArrayBuffer;
    const phys = hw.physAddr(owner);
    if (phys < 0) {
      // Not guest memory we can hand out (e.g. a SharedArrayBuffer): bounce through a copy.
      const bounce = new Uint8Array(length);
      const n = await this.read(bounce, 0, length, position);
      buffer.set(bounce.subarray(0, n), offset);
      return n;
    }
    const chunk = this.fs.maxRead;
    const base = phys + buffer.byteOffset + offset;
    if (length <= chunk) return this.fs.readChunk(this.node, this.fh, this.flags, owner, base, length, position, this.path);
    const parts: Promise<number>[] = [];
    for (let done = 0; done < length; done += chunk) {
      parts.push(this.fs.readChunk(this.node, this.fh, this.flags, owner, base + done, Math.min(chunk, length - done), position + done, this.path));
    }
    return contiguous(await Promise.all(parts), chunk);
  }

  async write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    this.check(buffer, offset, length, position);
    if ((this.flags & 3) === O_RDONLY) throw fsError("EBADF", this.path);
    if (length === 0) return 0;
    const owner = buffer.buffer as ArrayBuffer;
    const phys = hw.physAddr(owner);
    if (phys < 0) return this.write(buffer.slice(offset, offset + length), 0, length, position);
    this.dirty = true;
    this.written = true;
    this.node.attrUntil = 0;
    const chunk = this.fs.maxWrite;
    const base = phys + buffer.byteOffset + offset;
    if (length <= chunk) return this.fs.writeChunk(this.node, this.fh, this.flags, owner, base, length, position, this.path);
    if ((this.flags & O_APPEND) !== 0) {
      // O_APPEND writes land in the order the server runs them: one at a time.
      let total = 0;
      while (total < length) {
        const n = Math.min(chunk, length - total);
        const got = await this.fs.writeChunk(this.node, this.fh, this.flags, owner, base + total, n, position + total, this.path);
        total += got;
        if (got < n) break;
      }
      return total;
    }
    const parts: Promise<number>[] = [];
    for (let done = 0; done < length; done += chunk) {
      parts.push(this.fs.writeChunk(this.node, this.fh, this.flags, owner, base + done, Math.min(chunk, length - done), position + done, this.path));
    }
    return contiguous(await Promise.all(parts), chunk);
  }

  async stat(): Promise<FsStat> {
    if (this.closed) throw fsError("EBADF", this.path);
    return new VirtioFsStat(await this.fs.handleAttr(this.node, this.fh, this.path));
  }

  async truncate(length: number): Promise<void> {
    if (this.closed) throw fsError("EBADF", this.path);
    if (!Number.isInteger(length) || length < 0) throw fsError("EINVAL", this.path, `bad length ${length}`);
    if ((this.flags & 3) === O_RDONLY) throw fsError("EBADF", this.path);
    this.written = true;
    await this.fs.setattr(this.node, this.path, FATTR_SIZE | FATTR_FH, this.fh, length, 0, 0);
  }

  async sync(): Promise<void> {
    if (this.closed) throw fsError("EBADF", this.path);
    this.dirty = false;
    await this.fs.fsync(this.node, this.fh, this.path);
  }

  async close(): Promise<void> {
    if (this.closed) throw fsError("EBADF", this.path);
    this.closed = true;
    await this.fs.closeHandle(this, this.node, this.fh, this.flags, this.path, this.written);
  }
}

/** Bytes transferred by chunks of `chunk` bytes: up to and including the first short one. */
function contiguous(results: number[], chunk: number): number {
  let total = 0;
  for (const n of results) {
    total += n;
    if (n < chunk) break;
  }
  return total;
}

/**
 * The virtio-fs share of this VM as a FileSystem (for the VFS's /share), or null when there
 * is no virtio-fs device. Costs only device discovery: the driver starts and FUSE_INIT is
 * sent on the first operation.
 */
export function mountVirtioFs(options: VirtioFsOptions = {}): VirtioFs | null {
  const transport = claimDevice("fs", options.index ?? 0);
  return transport === null ? null : new VirtioFs(transport, options);
}
