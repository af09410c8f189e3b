// The guest's native HTTP request-head parser (platform/runtime/httphead.c) against the
// TypeScript reference (parseRequestHeadScript), both run by the host build of the guest's
// QuickJS with the parser linked in (build/profile/qjs-prof, see bench/profile/).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { build } from "esbuild";

const repo = join(new URL(".", import.meta.url).pathname, "../..");

test("native and TypeScript request-head parsers agree on a corpus and on 20000 random heads", async () => {
  const out = join(repo, "build/profile");
  // always rebuilt: the binary must hold the parser as it is now
  execFileSync("sh", [join(repo, "bench/profile/build.sh")], { stdio: "ignore" });
  await build({
    entryPoints: [join(repo, "bench/profile/head-check.ts")], bundle: true, format: "esm", platform: "neutral",
    outfile: join(out, "head-check.mjs"), external: ["os", "std"], target: "es2023", logLevel: "warning",
  });
  const result = execFileSync(join(out, "qjs-prof"), ["-m", join(out, "head-check.mjs"), "20000"], { encoding: "utf8" });
  assert.match(result, /http head parsers agree: \d+ cases/, result);
});
