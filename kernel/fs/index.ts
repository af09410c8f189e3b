/**
 * The filesystem unit: the VFS with this core's mounts, set up on first use. Today that is
 * /app, the files packed into the image; virtio-fs and ext2 mounts come with their drivers.
 */
import { hw, isNative } from "../hw.ts";
import { ImageFs } from "./imagefs.ts";
import { mount, onFirstUse } from "./vfs.ts";

onFirstUse(() => {
  const blob = isNative ? hw.imageFiles() : null;
  if (blob) mount("/app", new ImageFs(blob));
});

export { FsError, readFile, readdir, stat, mount, type FileSystem, type Stats } from "./vfs.ts";
