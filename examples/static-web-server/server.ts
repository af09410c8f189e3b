// The WebServer appliance: a microservice serving files over HTTP, as in Toro's talk.
// It serves the files packed into the image (`torito build --files DIR`, mounted at /app).
//   npx torito serve DIR --port 8080        (builds with DIR packed, boots, forwards the port)
// With several cores every core that owns a NIC serves on it, with its own TCP/IP stack:
// a request never leaves the core whose NIC it arrived on.
import { args, cores, net, serve } from "torito";
import { serveDirectory } from "./static.ts";

const portArg = args.find((a) => a.startsWith("--port="));
const port = portArg ? Number(portArg.slice("--port=".length)) : 80;
const root = args.find((a) => a.startsWith("--root="))?.slice("--root=".length) ?? "/app";

const where = cores.count > 1 ? ` (core ${cores.id})` : "";
if (cores.count === 1 || net.available()) {
  const server = serve({ port }, serveDirectory(root));
  console.log(`static-web-server: serving ${root} on port ${server.port}${where}`);
} else {
  console.log(`static-web-server: no network device on core ${cores.id}; it stays idle`);
}
