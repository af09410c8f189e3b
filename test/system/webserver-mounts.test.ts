// The WebServer appliance serving from a virtio-fs share (Toro's set-up) and from an
// ext2 disk, as well as from the files in its image.
import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { applianceImage } from "../../host/serve.ts";
import { freePort } from "../helpers/ports.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "../..");
const site = join(repo, "examples/static-web-server/site");

async function withAppliance(extra: string[], root: string, check: (base: string) => Promise<void>): Promise<void> {
  const image = await applianceImage(site);
  const port = await freePort();
  const guest: ChildProcess = spawn(process.execPath, [join(repo, "bin/torito.js"), "run", image, "--port", `${port}:80`, "--timeout", "120", ...extra, "--", `--root=${root}`], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  guest.stdout!.on("data", (d: Buffer) => (output += d));
  guest.stderr!.on("data", (d: Buffer) => (output += d));
  try {
    const deadline = Date.now() + 60_000;
    while (!output.includes("static-web-server: serving")) {
      if (Date.now() > deadline || guest.exitCode !== null) throw new Error(`appliance did not start:\n${output}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await check(`http://127.0.0.1:${port}`);
  } finally {
    guest.kill("SIGTERM");
  }
}


test("the appliance serves a virtio-fs share (--fs DIR, --root=/share)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "torito-share-"));
  try {
    execFileSync("cp", ["-r", `${site}/.`, dir]);
    execFileSync("sh", ["-c", `echo "only on the share" > ${dir}/share-only.txt`]);
    await withAppliance(["--fs", dir], "/share", async (base) => {
      const fetch = (p: string) => new Promise<string>((resolve, reject) => {
        const c = spawn("curl", ["-sS", "--max-time", "20", `${base}${p}`]);
        let out = "";
        c.stdout.on("data", (d: Buffer) => (out += d.toString("latin1")));
        c.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`curl ${p} failed`))));
      });
      assert.equal(await fetch("/share-only.txt"), "only on the share\n");
      assert.equal(await fetch("/"), readFileSync(join(site, "index.html"), "latin1"));
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the appliance serves an ext2 disk (--disk FILE, --root=/disk)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "torito-ext2site-"));
  try {
    const img = join(dir, "site.img");
    execFileSync("mke2fs", ["-q", "-t", "ext2", "-d", site, img, "4M"]);
    await withAppliance(["--disk", `${img}:ro`], "/disk", async (base) => {
      const fetch = (p: string) => new Promise<string>((resolve, reject) => {
        const c = spawn("curl", ["-sS", "--max-time", "20", `${base}${p}`]);
        let out = "";
        c.stdout.on("data", (d: Buffer) => (out += d.toString("latin1")));
        c.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`curl ${p} failed`))));
      });
      assert.equal(await fetch("/hello.txt"), readFileSync(join(site, "hello.txt"), "latin1"));
      assert.equal(await fetch("/docs/"), readFileSync(join(site, "docs/index.html"), "latin1"));
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
