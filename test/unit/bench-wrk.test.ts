// The benchmarks' reading of wrk's report (bench/lib.ts parseWrk).
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseWrk } from "../../bench/lib.ts";

const report = (reqSecStdev: string, errors = "") => `Running 4s test @ http://127.0.0.1:8080/612.html
  1 threads and 30 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.61ms  500.00us  10.00ms   90.00%
    Req/Sec    17.80k     1.00k   19.00k    ${reqSecStdev}
  Latency Distribution
     50%    1.61ms
     75%    1.80ms
     90%    2.00ms
     99%    4.13ms
  71220 requests in 4.00s, 50.00MB read
${errors}Requests/sec:  17805.00
Transfer/sec:     12.50MB
`;

test("percentiles come from the latency distribution, even when a thread-stats row ends in 50%", () => {
  for (const stdev of ["62.50%", "71.00%"]) {
    const r = parseWrk(report(stdev));
    assert.deepEqual(r, { rps: 17805, p50: "1.61ms", p99: "4.13ms", requests: 71220, errors: 0 });
  }
});

test("socket errors and non-2xx answers add up", () => {
  const r = parseWrk(report("71.00%", "  Socket errors: connect 0, read 1, write 0, timeout 2\n  Non-2xx or 3xx responses: 4\n"));
  assert.equal(r.errors, 7);
});
