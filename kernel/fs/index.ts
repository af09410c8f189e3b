/**
 * The filesystem unit: the VFS with this core's mounts, set up on first use (boot time is
 * not spent on file systems an app never touches): /app holds the files packed into the
 * image; /share, the host directory of `torito run --fs DIR` (virtio-fs); /disk, ext2 on
 * the first virtio-blk disk (`torito run --disk FILE`). The virtio-fs and ext2 drivers are
 * dynamic imports: chunks of their own in the image, read only when such a device exists.
 */
import { hw, isNative } from "../hw.ts";
import { blk, ownedCount } from "../devices/index.ts";
import { ImageFs } from "./imagefs.ts";
import { onBeforeExit } from "../process/scheduler.ts";
import { cores, onKernelMessage, postKernelMessage } from "../process/cores.ts";
import { mount, onFirstUse, syncAll, syncIfDirty } from "./vfs.ts";

// A clean exit (the event loop running dry) writes back whatever is dirty first.
onBeforeExit(syncIfDirty);

/** How long the boot core waits at a clean exit for the other cores to write back their mounts. */
export const EXIT_SYNC_TIMEOUT_MS = 5000;
const SYNC_TOPIC = "fs-sync";
const SYNCED_TOPIC = "fs-synced";

// Every core mounts its own file systems, and the VM's life is the boot core's: when core 0
// runs dry, it asks every other live core to write back its mounts and waits for their
// answers (a core busy in a long synchronous stretch, or stopped, is given up on after
// EXIT_SYNC_TIMEOUT_MS) before the VM powers off.
if (cores.count > 1 && cores.id !== 0) {
  onKernelMessage(SYNC_TOPIC, (_value, from) => {
    syncAll()
      .catch((e: unknown) => console.error(`fs: sync at exit failed on core ${cores.id}:`, e))
      .finally(() => postKernelMessage(from, SYNCED_TOPIC, cores.id));
  });
} else if (cores.count > 1) {
  let asked = false;
  onBeforeExit(() => {
    if (asked) return false;
    asked = true;
    const failed = hw.coresFailed();
    const waiting = new Set<number>();
    for (let core = 1; core < cores.count; core++) {
      if ((failed >>> core) & 1) continue;
      try {
        postKernelMessage(core, SYNC_TOPIC, null);
        waiting.add(core);
      } catch {
        // stopped in the meantime: nothing of it can be written back
      }
    }
    if (waiting.size === 0) return false;
    let stop = (): void => {};
    const timer = setTimeout(() => {
      console.error(`fs: core(s) ${[...waiting].join(",")} did not write back their mounts within ${EXIT_SYNC_TIMEOUT_MS} ms`);
      stop();
    }, EXIT_SYNC_TIMEOUT_MS);
    const remove = onKernelMessage(SYNCED_TOPIC, (_value, from) => {
      waiting.delete(from);
      if (waiting.size === 0) stop();
    });
    stop = () => {
      clearTimeout(timer);
      remove();
    };
    return true;
  });
}

onFirstUse(async () => {
  const blob = isNative ? hw.imageFiles() : null;
  if (blob) mount("/app", new ImageFs(blob));
  if (!isNative) return;
  // /share: the host directory of `torito run --fs DIR` (virtio-fs)
  if (ownedCount("fs") > 0) {
    try {
      const share = (await import("./virtiofs.ts")).mountVirtioFs();
      if (share) mount("/share", share);
    } catch (e) {
      console.error(`fs: /share not mounted: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  // /disk: the first virtio-blk disk, if it holds ext2 (a raw disk stays reachable via blk)
  if (blk.count() > 0) {
    try {
      const { mountExt2 } = await import("./ext2/ext2.ts");
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
