/**
 * Checks that the native request-head parser (platform/runtime/httphead.c, compiled into
 * qjs-prof) and the TypeScript one (parseRequestHeadScript, the reference) agree on every head:
 * same method, target, version and headers, or the same status and message; and that the
 * native head-end search agrees with findHeadEndScript over several ranges of each buffer.
 * A fixed corpus of valid and malformed heads, then random ones built from the bytes that matter.
 *   build/profile/qjs-prof -m head-check.mjs [random cases]   (test/platform/http-head.test.ts)
 */
import "./prelude.ts";
import { findHeadEndScript, fromNative, HttpError, parseRequestHeadScript, type RequestHead } from "../../kernel/net/http/wire.ts";

declare const scriptArgs: string[];
const natives = (globalThis as {
  __profNative?: {
    httpHead: (b: Uint8Array, s: number, e: number, l: number, c: number) => (string | number)[] | number;
    httpHeadEnd: (b: Uint8Array, from: number, end: number) => number;
  };
}).__profNative!;
const native = natives.httpHead;

function bytes(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i) & 255;
  return b;
}

function outcome(f: () => RequestHead): string {
  try {
    const h = f();
    return JSON.stringify([h.method, h.target, h.minorVersion, [...h.headers], h.headers.getSetCookie(), h.length]);
  } catch (e) {
    if (e instanceof HttpError) return `${e.status} ${e.message}`;
    throw e;
  }
}

let failures = 0;
let cases = 0;
function check(head: string, limits = { maxRequestLineBytes: 8192, maxHeaderBytes: 16384, maxHeaderCount: 100 }): void {
  cases++;
  // inside a bigger buffer, at an offset: the parsers must stay within [start, end)
  const b = new Uint8Array(head.length + 7);
  b.fill(0x0a);
  b.set(bytes(head), 3);
  const start = 3, end = 3 + head.length;
  const a = outcome(() => parseRequestHeadScript(b, start, end, limits));
  const n = outcome(() => fromNative(native(b, start, end, limits.maxRequestLineBytes, limits.maxHeaderCount), end - start));
  if (a !== n) {
    failures++;
    if (failures <= 10) console.log(`MISMATCH for ${JSON.stringify(head)}:\n  script ${a}\n  native ${n}`);
  }
  // the head-end search, over the head, the whole buffer (LFs around it) and cut ranges
  for (const [from, to] of [[start, end], [0, b.length], [start + 1, end - 1], [end - 2, end], [-2, 2], [end, start]] as const) {
    const x = findHeadEndScript(b, from, to), y = natives.httpHeadEnd(b, from, to);
    if (x !== y) {
      failures++;
      if (failures <= 10) console.log(`HEAD END MISMATCH for ${JSON.stringify(head)} in [${from}, ${to}): script ${x}, native ${y}`);
    }
  }
}

const corpus = [
  "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /612.html HTTP/1.1\r\nHost: 10.0.0.2\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n",
  "\r\n\r\nGET / HTTP/1.0\n\n",
  "POST /x?y=1 HTTP/1.1\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\nSet-Cookie: a\r\nset-cookie: b\r\n\r\n",
  "GET / HTTP/1.1\r\nX:  \t padded \t \r\nEmpty:\r\n\r\n",
  "GET / HTTP/1.1\r\nX: caf\xe9 \xff\r\n\r\n",
  "GET /\xe9 HTTP/1.1\r\n\r\n",
  "G\xe9T / HTTP/1.1\r\n\r\n",
  "GET / HTTP/1.1\r\nN\xe9me: v\r\n\r\n",
  "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
  "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
  "GET / HTTP/1.1\r",
  "GET  / HTTP/1.1\r\n\r\n",
  "GET / HTTP/1.1 \r\n\r\n",
  " GET / HTTP/1.1\r\n\r\n",
  "GET /\tx HTTP/1.1\r\n\r\n",
  "GET / HTTP/2.0\r\n\r\n",
  "GET / HTTP/1.10\r\n\r\n",
  "GET / http/1.1\r\n\r\n",
  "GET / HTTP/1.1\r\n folded: x\r\n\r\n",
  "GET / HTTP/1.1\r\n\tfolded: x\r\n\r\n",
  "GET / HTTP/1.1\r\nno colon\r\n\r\n",
  "GET / HTTP/1.1\r\n: empty name\r\n\r\n",
  "GET / HTTP/1.1\r\nsp ace: x\r\n\r\n",
  "GET / HTTP/1.1\r\nX : x\r\n\r\n",
  "GET / HTTP/1.1\r\nX:x:y\r\n\r\n",
  "GET",
  "GET /\r\n\r\n",
  "\r\n\r\n",
  `GET /${"a".repeat(300)} HTTP/1.1\r\nHost: x\r\n\r\n`,
  `GET / HTTP/1.1\r\n${"X-Long-Name-".repeat(40)}: v\r\n\r\n`,
  `GET / HTTP/1.1\r\nX: ${"\xe9".repeat(600)}\r\n\r\n`,
];
for (const h of corpus) check(h);
check(`GET /${"a".repeat(100)} HTTP/1.1\r\n\r\n`, { maxRequestLineBytes: 50, maxHeaderBytes: 16384, maxHeaderCount: 100 });
check("GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n", { maxRequestLineBytes: 8192, maxHeaderBytes: 16384, maxHeaderCount: 2 });
check("GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nbad line\r\n\r\n", { maxRequestLineBytes: 8192, maxHeaderBytes: 16384, maxHeaderCount: 2 });

// random heads from the bytes that matter to the grammar
let seed = 12345;
const random = (n: number) => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
};
const pieces = ["GET", "POST", " ", " ", "/", "/a", "HTTP/1.1", "HTTP/1.0", "HTTP/9.9", "\r\n", "\r\n", "\n", "\r", ":", ": ", "\t",
  "Host", "X-A", "x-a", "v", "\0", "\xe9", "\x7f", "(", "A", "\r\n\r\n"];
const count = Number(scriptArgs[1] ?? 20000);
for (let i = 0; i < count; i++) {
  let s = random(4) === 0 ? "" : "GET / HTTP/1.1\r\n";
  const n = 1 + random(14);
  for (let k = 0; k < n; k++) s += pieces[random(pieces.length)];
  check(s + (random(3) === 0 ? "" : "\r\n\r\n"), { maxRequestLineBytes: 10 + random(40), maxHeaderBytes: 16384, maxHeaderCount: 1 + random(4) });
}
console.log(failures === 0 ? `http head parsers agree: ${cases} cases` : `http head parsers disagree on ${failures} of ${cases} cases`);
