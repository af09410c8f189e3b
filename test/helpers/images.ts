/**
 * Images a system test boots: built once before its tests (`torito build`'s code path) into a
 * scratch directory that is removed after them. Call at the top level of a test file.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before } from "node:test";
import { fileURLToPath } from "node:url";
import { buildImage } from "../../host/build.ts";

/** The repository root. */
export const repo = join(dirname(fileURLToPath(import.meta.url)), "../..");

/** Builds each entry (a path from the repository root) as `<name>.elf`; paths fill in before the tests run. */
export function testImages<K extends string>(tag: string, apps: Record<K, string>): Record<K, string> {
  const work = mkdtempSync(join(tmpdir(), `torito-${tag}-`));
  const images = {} as Record<K, string>;
  before(async () => {
    for (const [name, entry] of Object.entries(apps) as [K, string][]) {
      images[name] = (await buildImage({ entry: join(repo, entry), output: join(work, `${name}.elf`), cwd: repo })).output;
    }
  });
  after(() => rmSync(work, { recursive: true, force: true }));
  return images;
}
