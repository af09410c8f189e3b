/**
 * Errors of the ext2 driver: FsError with a Node code and a message naming the on-disk
 * object at fault (superblock field, inode number, block number), so a corrupted image
 * reads as a diagnosis, not as a crash.
 */
import { FsError } from "../imagefs.ts";

export { FsError };

/** An FsError for an on-disk inconsistency (EIO) with the ext2 prefix. */
export function corrupted(message: string, path?: string): FsError {
  return new FsError("EIO", `ext2: corrupted file system: ${message}`, path);
}

/** An FsError with `code` and an ext2 message. */
export function ext2Error(code: string, message: string, path?: string): FsError {
  return new FsError(code, message, path);
}
