-- wrk script for benchmarks/ab_api.py: one GET path over and over (a cached GetObjectTorrent).
--
--   wrk -t1 -c32 -d5s -s benchmarks/wrk_get.lua http://127.0.0.1:PORT -- PATH CONNECTION
--
-- CONNECTION "close" adds "Connection: close"; "keepalive" reuses connections.
-- done() prints one line "WRKRESULT requests errors non2xx p50_us p99_us duration_us"
-- (the same line as wrk_announce.lua, parsed by bench_tracker.run_wrk's pattern).

function init(args)
   path = args[1] or "/"
   headers = {}
   if (args[2] or "keepalive") == "close" then
      headers["Connection"] = "close"
   end
   req = wrk.format("GET", path, headers)
end

function request()
   return req
end

function done(summary, latency, requests)
   io.write(string.format("WRKRESULT %d %d %d %d %d %d\n",
      summary.requests,
      summary.errors.connect + summary.errors.write + summary.errors.timeout,
      summary.errors.status,
      latency:percentile(50), latency:percentile(99), summary.duration))
end
