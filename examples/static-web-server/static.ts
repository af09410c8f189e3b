/**
 * Serving a directory over HTTP: the logic of the WebServer appliance, as a handler
 * factory any app can reuse. Correct Content-Type, Content-Length, ETag and
 * Last-Modified with conditional requests (304), single byte ranges (206/416), HEAD,
 * index.html for directories, 404, and no request path — percent-encoded or not — that
 * leaves the served root.
 */
import { fs, Response, URL, type Request } from "torito";

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

/** A request handler serving the directory `root` (an absolute VFS path such as "/app"). */
export function serveDirectory(root: string): (request: Request) => Promise<Response> {
  return async (request) => {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("405 Method Not Allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    const url = new URL(request.url);
    let path = resolveRequestPath(root, url.pathname);
    if (path === null) return new Response("400 Bad Request\n", { status: 400 });
    let stat;
    try {
      stat = await fs.stat(path);
      if (stat.isDirectory()) {
        if (!url.pathname.endsWith("/")) {
          return new Response(null, { status: 301, headers: { location: `${url.pathname}/${url.search}` } });
        }
        path = `${path}/index.html`;
        stat = await fs.stat(path);
      }
    } catch {
      return new Response("404 Not Found\n", { status: 404, headers: { "content-type": "text/plain; charset=utf-8" } });
    }
    const etag = etagOf(stat.size, stat.mtimeMs);
    const lastModified = httpDate(stat.mtimeMs);
    const headers: Record<string, string> = {
      "content-type": contentType(path),
      etag,
      "last-modified": lastModified,
      "accept-ranges": "bytes",
    };
    const inm = request.headers.get("if-none-match");
    const ims = request.headers.get("if-modified-since");
    if (inm !== null ? inm.split(",").some((t) => t.trim() === etag || t.trim() === "*")
      : ims !== null && Date.parse(ims) >= Math.floor(stat.mtimeMs / 1000) * 1000) {
      return new Response(null, { status: 304, headers: { etag, "last-modified": lastModified } });
    }
    const body = await fs.readFile(path);
    const rangeHeader = request.headers.get("range");
    const ifRange = request.headers.get("if-range");
    if (rangeHeader !== null && (ifRange === null || ifRange === etag || ifRange === lastModified)) {
      const range = parseRange(rangeHeader, body.length);
      if (range === "unsatisfiable") {
        return new Response(null, { status: 416, headers: { "content-range": `bytes */${body.length}` } });
      }
      if (range) {
        headers["content-range"] = `bytes ${range.start}-${range.end}/${body.length}`;
        return new Response(body.subarray(range.start, range.end + 1), { status: 206, headers });
      }
    }
    return new Response(body, { headers });
  };
}
