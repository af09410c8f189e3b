/** The app-facing network API (`import { net } from "torito"`). */
export { connect, listen, networkInfo, resolve } from "./index.ts";
export type { ByteStream, StreamListener } from "./stream.ts";
