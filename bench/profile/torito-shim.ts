// "torito" for the host profiling harness: what examples/static-web-server imports, without
// the device discovery of kernel/api.ts (the harness mounts /app itself).
export * as fs from "./shim-fs.ts";
export { Headers } from "../../kernel/web/headers.ts";
export { Request } from "../../kernel/web/request.ts";
export { Response } from "../../kernel/web/response.ts";
export { ReadableStream } from "../../kernel/web/streams.ts";
export { URL, URLSearchParams } from "../../kernel/web/url.ts";
