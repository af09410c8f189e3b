export { mount, open, readdir, readFile, stat } from "../../kernel/fs/vfs.ts";
