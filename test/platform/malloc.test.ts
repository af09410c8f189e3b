// The guest allocator under a randomised stress run, compiled for the host.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const here = new URL(".", import.meta.url).pathname;

test("guest allocator keeps every block intact under random alloc/realloc/free and enforces its limit", () => {
  const dir = mkdtempSync(join(tmpdir(), "torito-malloc-"));
  try {
    const exe = join(dir, "malloc_test");
    execFileSync("gcc", ["-O2", "-g", "-fsanitize=undefined", "-fno-sanitize-recover=all",
      "-I", here, "-o", exe, join(here, "malloc_test.c")]);
    const out = execFileSync(exe, ["300000"], { encoding: "utf8" });
    assert.match(out, /malloc stress: ok/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
