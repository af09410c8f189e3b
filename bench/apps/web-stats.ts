// The WebServer appliance plus GET /__stats: event-loop and device counters, so that a load
// test can report per-request figures that machine load does not distort (passes of the event
// loop, virtqueue notifications, halts, interrupts). Used by bench/web-quick.ts --stats.
import { Response, serve, URL } from "torito";
import { serveDirectory } from "../../examples/static-web-server/static.ts";
import { openNetDevice } from "../../kernel/devices/virtio/net.ts";
import { idleStats } from "../../kernel/process/scheduler.ts";

const files = serveDirectory("/app");
const server = serve({ port: 80 }, (request) => {
  if (new URL(request.url).pathname !== "/__stats") return files(request);
  const net = openNetDevice(0) as unknown as { counters: object; rxq: { notifications: number }; txq: { notifications: number } };
  return Response.json({
    ...idleStats(), requests: server.stats.requests,
    rxNotifications: net.rxq.notifications, txNotifications: net.txq.notifications, net: net.counters,
  });
});
console.log(`web-stats: serving on port ${server.port}`);
