// The Linux + Node.js baseline's web server (bench/linux-node): what a user would write with
// node:http to serve a directory. Files up to 1 MiB are read once and kept in memory; larger
// ones are streamed from the file system with fs.createReadStream. Any POST is read to the end
// and answered with its byte count (the Torito upload sink's /count does the same).
"use strict";
const http = require("node:http");
const fs = require("node:fs");
const path = require("node:path");

const root = process.argv[2] || "/srv";
const port = Number(process.argv[3] || 80);
const CACHE_LIMIT = 1 << 20;
const cache = new Map();
const types = { ".html": "text/html; charset=utf-8", ".txt": "text/plain; charset=utf-8" };

function contentType(file) {
  return types[path.extname(file)] || "application/octet-stream";
}

http.createServer((req, res) => {
  if (req.method === "POST") {
    let bytes = 0;
    req.on("data", (chunk) => (bytes += chunk.length));
    req.on("end", () => res.end(`${bytes}\n`));
    return;
  }
  let pathname;
  try {
    pathname = decodeURIComponent(new URL(req.url, "http://localhost").pathname);
  } catch {
    res.writeHead(400).end();
    return;
  }
  if (pathname.endsWith("/")) pathname += "index.html";
  const file = path.join(root, path.normalize(pathname));
  const cached = cache.get(file);
  if (cached) {
    res.writeHead(200, { "content-type": contentType(file), "content-length": cached.length });
    res.end(cached);
    return;
  }
  fs.stat(file, (err, st) => {
    if (err || !st.isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": contentType(file), "content-length": st.size });
    if (st.size > CACHE_LIMIT) {
      fs.createReadStream(file).pipe(res);
      return;
    }
    fs.readFile(file, (err2, data) => {
      if (err2) {
        res.destroy(err2);
        return;
      }
      cache.set(file, data);
      res.end(data);
    });
  });
}).listen(port, () => console.log(`linux-node: serving ${root} on port ${port}`));
