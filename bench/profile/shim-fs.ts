export { FsError, mount, open, readdir, readFile, readFileSync, stat, statSync } from "../../kernel/fs/vfs.ts";
