/**
 * Serving a directory over HTTP: the logic of the WebServer appliance, as a handler
 * factory any app can reuse. Correct Content-Type, Content-Length, ETag and
 * Last-Modified with conditional requests (304), single byte ranges (206/416), HEAD,
 * index.html for directories, 404, and no request path — percent-encoded or not — that
 * leaves the served root.
 */
import { fs, ReadableStream, Response, URL, type Request } from "torito";

// The fs functions called per request, read once: in a bundle the members of a namespace
// like `fs` are getters (a call per access).
const { statSync, readFileSync } = fs;

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8", htm: "text/html; charset=utf-8", css: "text/css; charset=utf-8",
  js: "text/javascript; charset=utf-8", mjs: "text/javascript; charset=utf-8", json: "application/json",
  txt: "text/plain; charset=utf-8", md: "text/markdown; charset=utf-8", xml: "application/xml",
  svg: "image/svg+xml", png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif",
  webp: "image/webp", ico: "image/x-icon", wasm: "application/wasm", pdf: "application/pdf",
  woff: "font/woff", woff2: "font/woff2", mp4: "video/mp4", webm: "video/webm", csv: "text/csv; charset=utf-8",
};

export function contentType(path: string): string {
  const dot = path.lastIndexOf(".");
  return (dot >= 0 && TYPES[path.slice(dot + 1).toLowerCase()]) || "application/octet-stream";
}

/**
 * The file-system path for a request path under `root`, or null when the request must be
 * refused (malformed encoding, NUL, backslash, or a ".." that would climb above the root).
 */
export function resolveRequestPath(root: string, requestPath: string): string | null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(requestPath);
  } catch {
    return null;
  }
  if (decoded.includes("\0") || decoded.includes("\\")) return null;
  const parts: string[] = [];
  for (const part of decoded.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (parts.length === 0) return null;
      parts.pop();
    } else parts.push(part);
  }
  return parts.length ? `${root}/${parts.join("/")}` : root;
}

/** Files up to this size are served in one piece; bigger ones stream in CHUNK-sized reads. */
const WHOLE_FILE_LIMIT = 1024 * 1024;
const CHUNK = 64 * 1024;

const httpDate = (ms: number) => new Date(Math.floor(ms / 1000) * 1000).toUTCString();

function etagOf(size: number, mtimeMs: number): string {
  return `"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}"`;
}

/** Parses "bytes=a-b" for a file of `size`; null = ignore (serve 200), "unsatisfiable" = 416. */
export function parseRange(header: string, size: number): { start: number; end: number } | null | "unsatisfiable" {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) return null; // multiple or malformed ranges: whole file
  let start: number, end: number;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0) return "unsatisfiable";
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (start > end && m[2] !== "") return null;
  }
  if (start >= size) return "unsatisfiable";
  return { start, end };
}

/** The response for bytes start..end of a small file's `body` (all of it for a 200). */
function piece(body: Uint8Array, status: number, start: number, end: number, headers: Readonly<Record<string, string>>): Response {
  return new Response(status === 206 ? body.subarray(start, end + 1) : body, { status, headers });
}

/** What is derived from a file's path and stat alone, kept while size and mtime stay the same. */
interface FileFacts {
  size: number;
  mtimeMs: number;
  type: string;
  etag: string;
  lastModified: string;
  /** The whole file once read, for files up to CACHED_FILE_LIMIT (same size and mtime: same bytes, as the ETag assumes). */
  body: Uint8Array | null;
  /** The headers of a 200 and of a 304, frozen: a Response validates a frozen record once. */
  headers: Readonly<Record<string, string>>;
  notModified: Readonly<Record<string, string>>;
  /** The Response inits of a whole-file 200 and of a 304 (shared: Response only reads its init). */
  ok: { status: number; headers: Readonly<Record<string, string>> };
  notModifiedInit: { status: number; headers: Readonly<Record<string, string>> };
}

/** Files up to this size are kept in memory after their first read, up to CACHE_BYTES in all. */
const CACHED_FILE_LIMIT = 64 * 1024;
const CACHE_BYTES = 8 * 1024 * 1024;

/** What the handler needs of a request URL. */
interface Target {
  pathname: string;
  search: string;
  /** the file-system path, or null when the request must be refused */
  path: string | null;
}

/** A request handler serving the directory `root` (an absolute VFS path such as "/app"). */
export function serveDirectory(root: string): (request: Request) => Response | Promise<Response> {
  // The file systems mount on their first use: start that once the caller's synchronous
  // start-up is done (a microtask: after serve() and its console line), while the server
  // waits for its first connection, so the first request takes the synchronous path like the
  // rest (a missing root shows up as 404s, per request).
  queueMicrotask(() => void fs.stat(root).catch(() => undefined));
  // Per request only the stat is asked again (files may change); what follows from the path
  // and from (size, mtime) is computed once.
  // request URL -> what follows from it (no URL parse per request)
  // (the map looked up by the handler itself first: a call less per request URL seen before)
  const targets = new Map<string, Target>();
  const targetOf = (href: string): Target => {
    const url = new URL(href);
    const target = { pathname: url.pathname, search: url.search, path: resolveRequestPath(root, url.pathname) };
    if (targets.size >= 256) targets.clear();
    targets.set(href, target);
    return target;
  };
  const facts = new Map<string, FileFacts>();
  let cachedBytes = 0;
  const factsOf = (path: string, size: number, mtimeMs: number): FileFacts => {
    let f = facts.get(path);
    if (f === undefined || f.size !== size || f.mtimeMs !== mtimeMs) {
      if (f?.body) cachedBytes -= f.body.length;
      const type = contentType(path), etag = etagOf(size, mtimeMs), lastModified = httpDate(mtimeMs);
      const headers = Object.freeze({ "content-type": type, etag, "last-modified": lastModified, "accept-ranges": "bytes" });
      const notModified = Object.freeze({ etag, "last-modified": lastModified });
      f = {
        size, mtimeMs, type, etag, lastModified, body: null, headers, notModified,
        ok: { status: 200, headers }, notModifiedInit: { status: 304, headers: notModified },
      };
      if (facts.size >= 256) {
        facts.clear();
        cachedBytes = 0;
      }
      facts.set(path, f);
    }
    return f;
  };
  const keep = (path: string, file: FileFacts, body: Uint8Array): Uint8Array => {
    // kept only if the file did not change meanwhile (same size) and there is room
    if (body.length === file.size && body.length <= CACHED_FILE_LIMIT && cachedBytes + body.length <= CACHE_BYTES && facts.get(path) === file) {
      file.body = body;
      cachedBytes += body.length;
    }
    return body;
  };
  const bodyOf = async (path: string, file: FileFacts): Promise<Uint8Array> => keep(path, file, await fs.readFile(path));
  /** The file's bytes at once when its file system can (else null: read them with bodyOf). */
  const bodyNow = (path: string, file: FileFacts): Uint8Array | null => {
    try {
      return keep(path, file, readFileSync(path));
    } catch {
      return null; // not at once, or an error the promise API reports in full
    }
  };
  const notFound = () => new Response("404 Not Found\n", { status: 404, headers: { "content-type": "text/plain; charset=utf-8" } });
  // The general path: any file system, directories (redirect, index.html).
  const slow = async (request: Request, url: Target): Promise<Response> => {
    let path = url.path!;
    let stat;
    try {
      stat = await fs.stat(path);
      if (stat.isDirectory()) {
        if (!url.pathname.endsWith("/")) {
          // from the resolved path, never the raw one: "//host" would redirect off-site
          const clean = path.slice(root.length).replace(/^\/*/, "/");
          return new Response(null, { status: 301, headers: { location: `${encodeURI(clean === "/" ? "" : clean)}/${url.search}` } });
        }
        path = `${path}/index.html`;
        stat = await fs.stat(path);
      }
    } catch {
      return notFound();
    }
    return fileResponse(request, path, stat);
  };
  // A plain response (not a promise) when the file system answers at once (the image's
  // files): the server then writes it without any promise either.
  return (request) => {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("405 Method Not Allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    const href = request.url;
    const url = targets.get(href) ?? targetOf(href);
    const path = url.path;
    if (path === null) return new Response("400 Bad Request\n", { status: 400 });
    let stat;
    try {
      stat = statSync(path);
    } catch (e) {
      return e instanceof fs.FsError && e.code !== "EAGAIN" ? notFound() : slow(request, url);
    }
    return stat.isDirectory() ? slow(request, url) : fileResponse(request, path, stat);
  };

  function fileResponse(request: Request, path: string, stat: fs.Stats): Response | Promise<Response> {
    const file = factsOf(path, stat.size, stat.mtimeMs);
    const etag = file.etag;
    const lastModified = file.lastModified;
    let headers = file.headers;
    const inm = request.headers.get("if-none-match");
    const ims = request.headers.get("if-modified-since");
    if (inm !== null ? inm.split(",").some((t) => t.trim() === etag || t.trim() === "*")
      : ims !== null && Date.parse(ims) >= Math.floor(stat.mtimeMs / 1000) * 1000) {
      return new Response(null, file.notModifiedInit);
    }
    const size = stat.size;
    let start = 0, end = size - 1, status = 200;
    const rangeHeader = request.headers.get("range");
    const ifRange = rangeHeader === null ? null : request.headers.get("if-range"); // (no lookup when it cannot matter)
    if (rangeHeader !== null && (ifRange === null || ifRange === etag || ifRange === lastModified)) {
      const range = parseRange(rangeHeader, size);
      if (range === "unsatisfiable") {
        return new Response(null, { status: 416, headers: { "content-range": `bytes */${size}` } });
      }
      if (range) {
        ({ start, end } = range);
        status = 206;
        headers = { ...headers, "content-range": `bytes ${start}-${end}/${size}` };
      }
    }
    if (request.method === "HEAD") {
      const length = Math.max(0, end - start + 1);
      return new Response(null, { status, headers: { ...headers, "content-length": String(length) } });
    }
    if (size <= WHOLE_FILE_LIMIT) {
      // small files in one piece (for packed files a view of the image: no copy at all)
      const body = file.body ?? bodyNow(path, file);
      if (body !== null) return status === 200 ? new Response(body, file.ok) : piece(body, status, start, end, headers);
      return bodyOf(path, file).then((bytes) => piece(bytes, status, start, end, headers));
    }
    return streamed(path, start, end, status, headers);
  }

  /** Big files stream in chunks: memory per request stays bounded whatever the file size. */
  async function streamed(path: string, start: number, end: number, status: number, headers: Readonly<Record<string, string>>): Promise<Response> {
    const handle = await fs.open(path, "r");
    let position = start;
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const want = Math.min(CHUNK, end + 1 - position);
        if (want <= 0) {
          await handle.close();
          controller.close();
          return;
        }
        const { bytesRead, buffer } = await handle.read(new Uint8Array(want), 0, want, position);
        if (bytesRead === 0) {
          await handle.close();
          controller.error(new Error(`${path} shrank while being served`));
          return;
        }
        position += bytesRead;
        controller.enqueue(buffer.subarray(0, bytesRead));
      },
      async cancel() {
        await handle.close();
      },
    });
    return new Response(stream, { status, headers: { ...headers, "content-length": String(end - start + 1) } });
  }
}
