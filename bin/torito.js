#!/usr/bin/env node
// The `torito` command. Bundles host/cli.ts (and what it imports) into build/host/cli.mjs with
// esbuild when any input changed since the last bundle, then runs it. The staleness check only
// stats the inputs listed by the last bundle's metafile, so a warm start costs a few ms.
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..");
const outFile = join(repo, "build/host/cli.mjs");
const stampFile = join(repo, "build/host/cli.inputs.json");

/** True when the bundle is missing or any input changed after the bundle was started. */
function isStale() {
  let stamp;
  try {
    stamp = JSON.parse(readFileSync(stampFile, "utf8"));
    statSync(outFile);
  } catch {
    return true;
  }
  for (const input of stamp.inputs) {
    try {
      if (statSync(join(repo, input)).mtimeMs > stamp.startedMs) return true;
    } catch {
      return true;
    }
  }
  return false;
}

async function rebuild() {
  const startedMs = Date.now();
  const esbuild = await import("esbuild");
  const result = await esbuild.build({
    entryPoints: [join(repo, "host/cli.ts")],
    absWorkingDir: repo,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    sourcemap: "linked",
    outfile: outFile,
    metafile: true,
    write: false,
    logLevel: "error",
  });
  mkdirSync(dirname(outFile), { recursive: true });
  // Write-then-rename so that concurrent invocations never import a half-written bundle.
  const tmp = `.${process.pid}.tmp`;
  const files = [...result.outputFiles].sort((a) => (a.path.endsWith(".map") ? -1 : 1));
  for (const file of files) {
    writeFileSync(file.path + tmp, file.contents);
    renameSync(file.path + tmp, file.path);
  }
  writeFileSync(stampFile + tmp, JSON.stringify({ startedMs, inputs: Object.keys(result.metafile.inputs) }));
  renameSync(stampFile + tmp, stampFile);
}

if (isStale()) {
  try {
    await rebuild();
  } catch (e) {
    process.stderr.write(`torito: error: cannot bundle host/cli.ts: ${e instanceof Error ? e.message.split("\n")[0] : e}\n`);
    process.exit(1);
  }
}
process.setSourceMapsEnabled(true);
const { main } = await import(pathToFileURL(outFile).href);
process.exit(await main(process.argv.slice(2)));
