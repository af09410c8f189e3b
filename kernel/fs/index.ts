/**
 * The filesystem unit: the VFS with this core's mounts, set up on first use (boot time is
 * not spent on file systems an app never touches): /app holds the files packed into the
 * image; /share, the host directory of `torito run --fs DIR` (virtio-fs); /disk, ext2 on
 * the first virtio-blk disk (`torito run --disk FILE`).
 */
import { hw, isNative } from "../hw.ts";
import { blk } from "../devices/index.ts";
import { mountExt2 } from "./ext2/ext2.ts";
import { ImageFs } from "./imagefs.ts";
import { mountVirtioFs } from "./virtiofs.ts";
import { onBeforeExit } from "../process/scheduler.ts";
import { mount, onFirstUse, syncIfDirty } from "./vfs.ts";

// A clean exit (the event loop running dry) writes back whatever is dirty first.
onBeforeExit(syncIfDirty);

onFirstUse(async () => {
  const blob = isNative ? hw.imageFiles() : null;
  if (blob) mount("/app", new ImageFs(blob));
  if (!isNative) return;
  // /share: the host directory of `torito run --fs DIR` (virtio-fs)
  const share = mountVirtioFs();
  if (share) mount("/share", share);
  // /disk: the first virtio-blk disk, if it holds ext2 (a raw disk stays reachable via blk)
  if (blk.count() > 0) {
    try {
      mount("/disk", await mountExt2(blk.open(0), { log: (line) => console.log(line) }));
    } catch (e) {
      console.error(`fs: /disk not mounted: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
});

export {
  appendFile, FileHandle, FsError, lstat, mkdir, mount, open, readdir, readFile, readFileSync, rename, rm, rmdir, stat,
  statSync, syncAll, unlink, writeFile, MAX_OPEN_FILES, type Stats,
} from "./vfs.ts";
export type { FileSystem, FsStat } from "./types.ts";
