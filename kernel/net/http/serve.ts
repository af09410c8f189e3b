/**
 * `serve(options, handler)`: an HTTP/1.1 server on this core's network stack, with a
 * web-standard handler `(request: Request) => Response | Promise<Response>`.
 */
import { listen } from "../index.ts";
import { HttpServer, type Handler, type ServerLimits, type ServerStats } from "./server.ts";

export interface ServeOptions extends Partial<ServerLimits> {
  /** TCP port to listen on (default 80; 0 = any free port). */
  port?: number;
  /** Pending connections the kernel queues before accept (default 128). */
  backlog?: number;
}

/** A running server. */
export interface Server {
  readonly port: number;
  readonly stats: ServerStats;
  readonly limits: ServerLimits;
  /** Stops listening and closes every connection. */
  close(): void;
  /** Settles when the server has stopped accepting. */
  readonly finished: Promise<void>;
}

/** Starts serving HTTP on `options.port`; the VM keeps running while the server is open. */
export function serve(options: ServeOptions, handler: Handler): Server {
  const { port = 80, backlog, ...limits } = options;
  const listener = listen(port, backlog !== undefined ? { backlog } : {});
  const server = new HttpServer(listener, handler, limits);
  return {
    get port() { return server.port; },
    get stats() { return server.stats; },
    get limits() { return server.limits; },
    close: () => server.close(),
    finished: server.finished,
  };
}

export type { Handler, ServerLimits, ServerStats };
