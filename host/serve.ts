/**
 * `torito serve DIR`: the WebServer appliance (examples/static-web-server) built with DIR
 * packed into the image, cached by content, and booted with a port forward.
 */
import { createHash } from "node:crypto";
import { existsSync, lstatSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { buildImage, platformPaths, repoRoot } from "./build.ts";
import { UsageError } from "./run.ts";

/** Hashes what the image depends on: the appliance and kernel sources, the platform, DIR. */
function cacheKey(repo: string, dir: string): string {
  const hash = createHash("sha256");
  const walk = (base: string, rel: string, withContents: boolean) => {
    for (const name of readdirSync(join(base, rel)).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(base, path));
      if (st.isDirectory()) walk(base, path, withContents);
      else {
        hash.update(`${path}\0${st.size}\0${Math.floor(st.mtimeMs)}\0`);
        if (withContents && st.size < 1 << 20) hash.update(readFileSync(join(base, path)));
      }
    }
  };
  walk(join(repo, "kernel"), "", false);
  walk(join(repo, "host"), "", false);
  walk(join(repo, "examples/static-web-server"), "", false);
  hash.update(String(statSync(platformPaths(repo).linkInputs).mtimeMs));
  walk(dir, "", true); // the served files by content: an edit that keeps size and time still rebuilds
  return hash.digest("hex").slice(0, 16);
}

/** Returns the appliance image serving `dir`, building it when the cache is stale. */
export async function applianceImage(dir: string, log?: (line: string) => void): Promise<string> {
  const root = resolve(dir);
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new UsageError(`serve: '${dir}' is not a directory`);
  const repo = repoRoot();
  const image = join(repo, "build/serve", `appliance-${cacheKey(repo, root)}.elf`);
  if (!existsSync(image)) {
    await buildImage({ entry: join(repo, "examples/static-web-server/server.ts"), output: image, files: root, cwd: repo, ...(log ? { log } : {}) });
  }
  return image;
}
