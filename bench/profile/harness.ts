/**
 * Prepares the request-path harness that bench/profile/run.ts and census.ts run: the test
 * site packed to build/profile/site.pack and web-host.ts bundled to build/profile/web-host.mjs.
 * Returns the bundle's path; its `// path` comments name the source of each line (origin()).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";
import * as hostBuild from "../../host/build.ts";
import { packDirectory } from "../../host/pack.ts";
import { testSite } from "../../test/tools/netns.ts";

export const repo = join(import.meta.dirname, "../..");
export const out = join(repo, "build/profile");

export async function prepareHarness(): Promise<{ bundle: string; site: string }> {
  mkdirSync(out, { recursive: true });
  const site = join(out, "site.pack");
  writeFileSync(site, packDirectory(testSite(repo, "bench-small", 1024)));
  const bundle = join(out, "web-host.mjs");
  const built = await build({
    entryPoints: [join(import.meta.dirname, "web-host.ts")], bundle: true, format: "esm", platform: "neutral",
    outfile: bundle, external: ["os", "std"], alias: { torito: join(import.meta.dirname, "torito-shim.ts") },
    target: "es2023", logLevel: "warning", mainFields: ["module", "main"], sourcemap: "external", write: false,
  });
  // As the tree's own image build does (host/build.ts), so that the bytecode has the guest's
  // shapes: a tree whose build has no lowering (an older baseline of webserver-cost.ts,
  // which runs this harness in it) is measured without.
  const lower = (hostBuild as Partial<typeof hostBuild>).lowerBlockScopes;
  const js = built.outputFiles.find((f) => !f.path.endsWith(".map"))!, map = built.outputFiles.find((f) => f.path.endsWith(".map"))!;
  writeFileSync(bundle, lower === undefined ? js.text : (await lower({ code: js.text, map: JSON.parse(map.text) })).code);
  return { bundle, site };
}

/** The source file a line of the bundle belongs to (the nearest `// path` comment above it). */
export function origin(bundleLines: readonly string[], line: number): string {
  for (let l = line - 1; l >= 0; l--) {
    const m = /^\/\/ (\S+)$/.exec(bundleLines[l] ?? "");
    if (m) return m[1]!.replace(/^.*\//, "");
  }
  return "?";
}
