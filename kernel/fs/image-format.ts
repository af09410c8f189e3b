/**
 * The layout of files packed into an image by `torito build --files DIR` (read-only,
 * mounted at /app). Shared by the host packer and the guest reader; no imports.
 *
 *   offset 0   "TRFS" magic, u32le version (1), u32le index length N
 *   offset 12  N bytes of UTF-8 JSON: { entries: [{ path, kind, offset, size, mtimeMs }] }
 *   then       file contents, each at its `offset` from the start of the blob, 16-byte aligned
 *
 * Paths are relative to the packed directory, "/"-separated, without "." or "..";
 * directories are listed too (kind "dir", size 0) so empty ones survive.
 */
export const IMAGE_FS_MAGIC = 0x53465254; // "TRFS" little-endian
export const IMAGE_FS_VERSION = 1;

export interface ImageFsEntry {
  path: string;
  kind: "file" | "dir";
  offset: number;
  size: number;
  mtimeMs: number;
}

export interface ImageFsIndex {
  entries: ImageFsEntry[];
}
