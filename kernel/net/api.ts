/** The app-facing network API (`import { net } from "torito"`). */
export { available, connect, listen, networkInfo, ready, resolve, udp, type Datagram, type UdpEndpoint } from "./index.ts";
export type { ByteStream, StreamListener } from "./stream.ts";
