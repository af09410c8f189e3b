// The guest's URL and URLSearchParams (kernel/web/url.ts) against Node's WHATWG implementation.
import assert from "node:assert/strict";
import { test } from "node:test";
import { URL as GuestURL, URLSearchParams as GuestParams } from "../../kernel/web/url.ts";

const cases: [string, string?][] = [
  ["http://127.0.0.1:8080/hello.txt"],
  ["http://Example.COM/a/b/../c/./d?x=1&y=2#frag"],
  ["https://example.com:443/p"],
  ["http://example.com:80/p?q"],
  ["http://user:pw@host:81/x"],
  ["http://host/a b/ü?q=a b#f g"],
  ["http://host/%2e%2e/x"],
  ["http://host/a/%2E/b"],
  ["../up?z=1", "http://h/a/b/c"],
  ["/abs", "http://h/a/b"],
  ["?only", "http://h/a/b"],
  ["#h", "http://h/a/b?q"],
  ["//other/x", "https://h/a"],
  ["rel", "http://h/a/"],
];

test("URL parses and serialises like Node's for request-shaped inputs", () => {
  for (const [input, base] of cases) {
    const ours = new GuestURL(input, base);
    const node = new URL(input, base);
    for (const k of ["href", "protocol", "host", "hostname", "port", "pathname", "search", "hash", "origin"] as const) {
      assert.equal(ours[k], node[k], `${k} of ${input} (base ${base})`);
    }
  }
  assert.throws(() => new GuestURL("no-scheme"), TypeError);
  assert.throws(() => new GuestURL("http://host:99999/"), TypeError);
});

test("URLSearchParams decodes, edits and serialises like Node's", () => {
  const q = "a=1&b=x+y&a=2&c=%C3%BC&d&e=";
  const ours = new GuestParams(q);
  const node = new URLSearchParams(q);
  assert.deepEqual([...ours], [...node]);
  assert.deepEqual(ours.getAll("a"), node.getAll("a"));
  ours.set("a", "3 4");
  node.set("a", "3 4");
  ours.append("z", "!'()~");
  node.append("z", "!'()~");
  assert.equal(ours.toString(), node.toString());
  const u = new GuestURL("http://h/p?x=1");
  u.searchParams.append("y", "2");
  assert.equal(u.search, "?x=1&y=2");
});
