// The WebServer appliance booted for real (`torito serve` path: appliance image with the
// example site packed in, QEMU user networking with a host port forward) and driven by
// curl and wget: what a user of `npm start` gets.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { applianceImage } from "../../host/serve.ts";
import { kvmUsable, type Accel } from "../../host/run.ts";
import { freePort } from "../helpers/ports.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "../..");
const site = join(repo, "examples/static-web-server/site");
const cli = join(repo, "bin/torito.js");
const accels: Accel[] = kvmUsable().ok ? ["kvm", "tcg"] : ["tcg"];

function run(command: string, args: string[], cwd?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], ...(cwd ? { cwd } : {}) });
    let stdout = "", stderr = "";
    child.stdout.setEncoding("latin1").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

async function curl(...args: string[]): Promise<string> {
  const r = await run("curl", ["-sS", "--max-time", "20", ...args]);
  if (r.code !== 0) throw new Error(`curl ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

/** Sends raw bytes and returns what comes back before the server closes (or 3 s pass). */
function raw(port: number, data: string, waitMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let out = "";
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => (out += d));
    socket.on("error", reject);
    socket.on("close", () => resolve(out));
    socket.write(data);
    setTimeout(() => socket.destroy(), waitMs);
  });
}

for (const accel of accels) {
  describe(`web server appliance under ${accel}`, () => {
    let guest: ChildProcess;
    let port: number;
    let base: string;
    let console_ = "";

    before(async () => {
      const image = await applianceImage(site);
      port = await freePort();
      base = `http://127.0.0.1:${port}`;
      guest = spawn(process.execPath, [cli, "run", image, "--accel", accel, "--mem", "64M", "--port", `${port}:80`, "--timeout", "300"], { stdio: ["ignore", "pipe", "pipe"] });
      guest.stdout!.setEncoding("utf8").on("data", (d: string) => (console_ += d));
      guest.stderr!.setEncoding("utf8").on("data", (d: string) => (console_ += d));
      const deadline = Date.now() + 60_000;
      while (!console_.includes("static-web-server: serving")) {
        if (Date.now() > deadline || guest.exitCode !== null) throw new Error(`appliance did not start:\n${console_}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    });

    after(() => {
      guest?.kill("SIGTERM");
    });

    test("index.html for /, with type, length, ETag and Last-Modified", async () => {
      const out = await curl("-i", `${base}/`);
      assert.match(out, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(out, /\r\ncontent-type: text\/html; charset=utf-8\r\n/i);
      const body = readFileSync(join(site, "index.html"), "latin1");
      assert.match(out, new RegExp(`\\r\\ncontent-length: ${body.length}\\r\\n`, "i"));
      assert.match(out, /\r\netag: "[0-9a-f]+-[0-9a-f]+"\r\n/i);
      assert.match(out, /\r\nlast-modified: \w{3}, \d{2} \w{3} \d{4} [\d:]{8} GMT\r\n/i);
      assert.ok(out.endsWith(`\r\n\r\n${body}`));
    });

    test("conditional requests get 304, ranges 206 and 416, HEAD no body", async () => {
      const head = await curl("-sI", `${base}/hello.txt`);
      const etag = /etag: (\S+)/i.exec(head)![1]!;
      const lastModified = /last-modified: ([^\r]+)/i.exec(head)![1]!;
      assert.match(head, /content-length: 40/i);
      assert.match(await curl("-i", "-H", `If-None-Match: ${etag}`, `${base}/hello.txt`), /^HTTP\/1\.1 304 /);
      assert.match(await curl("-i", "-H", `If-Modified-Since: ${lastModified}`, `${base}/hello.txt`), /^HTTP\/1\.1 304 /);
      const partial = await curl("-i", "-H", "Range: bytes=7-12", `${base}/hello.txt`);
      assert.match(partial, /^HTTP\/1\.1 206 /);
      assert.match(partial, /content-range: bytes 7-12\/40/i);
      assert.ok(partial.endsWith("\r\n\r\nserves"));
      assert.match(await curl("-i", "-H", "Range: bytes=100-", `${base}/hello.txt`), /^HTTP\/1\.1 416 /);
    });

    test("404 for missing files, 301 for a directory without its slash", async () => {
      assert.match(await curl("-i", `${base}/missing.html`), /^HTTP\/1\.1 404 /);
      const dir = await curl("-i", `${base}/docs`);
      assert.match(dir, /^HTTP\/1\.1 301 /);
      assert.match(dir, /location: \/docs\//i);
      // a doubled slash must not turn the redirect into "//docs/" (another host for a browser)
      const doubled = await raw(port, "GET //docs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
      assert.match(doubled, /^HTTP\/1\.1 301 /);
      assert.match(doubled, /\r\nlocation: \/docs\/\r\n/i);
    });

    test("no path, encoded or not, escapes the served root", async () => {
      for (const path of ["/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd", "/docs/..%2f..%2f..%2fetc/passwd", "/%00", "/..\\..\\etc\\passwd"]) {
        const out = await raw(port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
        assert.match(out, /^HTTP\/1\.1 (400|404) /, `${path} -> ${out.slice(0, 40)}`);
        assert.doesNotMatch(out, /root:/);
      }
    });

    test("wget mirrors the whole site byte for byte", async () => {
      const dir = mkdtempSync(join(tmpdir(), "torito-mirror-"));
      try {
        const r = await run("wget", ["-q", "-r", "-np", "-nH", "-P", dir, `${base}/`, `${base}/hello.txt`]);
        assert.equal(r.code, 0, r.stderr);
        const files = (d: string): string[] => readdirSync(d).flatMap((n) => (statSync(join(d, n)).isDirectory() ? files(join(d, n)) : [join(d, n)]));
        const got = files(dir).map((f) => relative(dir, f)).sort();
        const want = files(site).map((f) => relative(site, f)).sort();
        assert.deepEqual(got, want);
        for (const f of want) {
          const a = createHash("sha256").update(readFileSync(join(site, f))).digest("hex");
          const b = createHash("sha256").update(readFileSync(join(dir, f))).digest("hex");
          assert.equal(b, a, f);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    test("hostile requests get their status and the server keeps serving", async () => {
      assert.match(await raw(port, `GET /${"a".repeat(20000)} HTTP/1.1\r\nHost: x\r\n\r\n`), /^HTTP\/1\.1 414 /);
      assert.match(await raw(port, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + "c".repeat(20000) + "\r\n\r\n"), /^HTTP\/1\.1 431 /);
      assert.match(await raw(port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n"), /^HTTP\/1\.1 400 /);
      assert.match(await raw(port, "\x16\x03\x01\x02\x00garbage\r\n\r\n"), /^HTTP\/1\.1 400 /);
      assert.match(await curl("-i", `${base}/hello.txt`), /^HTTP\/1\.1 200 /);
    });

    test("a burst of 600 short-lived connections does not exhaust the guest's memory", async () => {
      // Regression: TIME-WAIT connections kept their 128 KiB of buffers for 30 s.
      const open: ReturnType<typeof connect>[] = [];
      for (let i = 0; i < 600; i++) {
        const s = connect(port, "127.0.0.1");
        s.on("error", () => undefined);
        s.write("GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        open.push(s);
        if (open.length > 25) open.shift()!.destroy();
        await new Promise((r) => setTimeout(r, 1));
      }
      for (const s of open) s.destroy();
      await new Promise((r) => setTimeout(r, 500));
      assert.match(await curl("-i", `${base}/hello.txt`), /^HTTP\/1\.1 200 /);
      assert.doesNotMatch(console_, /out of memory/);
    });

    test("keep-alive and pipelining work through the guest's TCP", async () => {
      const reqs = Array.from({ length: 5 }, () => "GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n").join("") + "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
      const out = await raw(port, reqs);
      assert.equal([...out.matchAll(/^HTTP\/1\.1 200 /gm)].length, 6);
    });
  });
}
