// UDP sockets of the app-facing `net` API, through QEMU user networking to a host echo service.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { buildImage } from "../../host/build.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "../..");

test("an app's UDP datagrams reach a host service and the echoes come back intact", async () => {
  const work = mkdtempSync(join(tmpdir(), "torito-udp-"));
  const echo = createSocket("udp4");
  try {
    echo.on("message", (msg, from) => echo.send(Buffer.concat([Buffer.from("echo: "), msg]), from.port, from.address));
    await new Promise<void>((resolve) => echo.bind(0, "127.0.0.1", resolve));
    const port = echo.address().port;
    const image = (await buildImage({ entry: join(repo, "test/fixtures/apps/udp-echo.ts"), output: join(work, "udp.elf"), cwd: repo })).output;
    const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
      // --netdev user: a network device without TCP forwards; the guest configures it by DHCP
      const child = spawn(process.execPath, [join(repo, "bin/torito.js"), "run", image, "--netdev", "user", "--timeout", "60", "--", String(port)], { stdio: ["ignore", "pipe", "pipe"] });
      let text = "";
      child.stdout.on("data", (d: Buffer) => (text += d));
      child.stderr.on("data", (d: Buffer) => (text += d));
      child.on("close", (code) => resolve({ code, text }));
    });
    assert.equal(out.code, 0, out.text);
    assert.match(out.text, /^udp: 20 echoes ok$/m);
  } finally {
    echo.close();
    rmSync(work, { recursive: true, force: true });
  }
});
