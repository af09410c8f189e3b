/**
 * The filesystem unit: the VFS with this core's mounts, set up on first use (boot time is
 * not spent on file systems an app never touches): /app holds the files packed into the
 * image. virtio-fs (/share) and ext2 (/disk) mount here as their drivers land.
 */
import { hw, isNative } from "../hw.ts";
import { ImageFs } from "./imagefs.ts";
import { onBeforeExit } from "../process/scheduler.ts";
import { mount, onFirstUse, syncIfDirty } from "./vfs.ts";

// A clean exit (the event loop running dry) writes back whatever is dirty first.
onBeforeExit(syncIfDirty);

onFirstUse(async () => {
  const blob = isNative ? hw.imageFiles() : null;
  if (blob) mount("/app", new ImageFs(blob));
});

export {
  appendFile, FileHandle, FsError, mkdir, mount, open, readdir, readFile, rename, rm, rmdir, stat, syncAll,
  unlink, writeFile, MAX_OPEN_FILES, type Stats,
} from "./vfs.ts";
export type { FileSystem, FsStat } from "./types.ts";
