-- wrk script for benchmarks/bench_tracker.py: BitTorrent announces with binary info_hash and
-- peer_id, percent-encoded, for a synthetic population of peers.
--
--   wrk -t1 -c64 -d10s -s benchmarks/wrk_announce.lua http://127.0.0.1:PORT -- \
--       MODE PEERS TORRENTS NUMWANT CONNECTION [HASHES]
--
-- MODE "started": the thread walks the peers in order, announcing event=started, and
--   once it has PEERS answers (every peer announced once) prints "WRKSTARTED n" and ends
--   the process (wrk would otherwise idle until -d runs out). Run it with -t1.
-- MODE "steady": random peers re-announce (no event) until the duration runs out.
-- MODE "scrape": GET /scrape with HASHES (default 1) info_hash parameters of random
--   torrents (BEP 48) until the duration runs out.
-- CONNECTION "close" adds "Connection: close" (one TCP connection per announce, as real
--   clients do); "keepalive" reuses connections.
--
-- Peer p: torrent t = p % TORRENTS, port 10000 + p // TORRENTS (unique in its swarm, all
-- from 127.0.0.1), a seeder (left=0) when (p // TORRENTS) % 5 == 0 (20 %).
-- info_hash of torrent t: 16 bytes 0xb7 then t as 4 bytes big-endian (bench_tracker.py
-- writes the same hashes for the trackers that need a whitelist or registration).
-- peer_id: "-BT0001-" then p as 12 decimal digits.
-- Errors counted: connect, write, timeouts and non-2xx answers; not wrk's "read" errors,
-- which are a server closing the connection after its answer (opentracker always does).
-- done() prints one line "WRKRESULT requests errors non2xx p50_us p99_us duration_us".

local counter = 0
local threads = {}

function setup(thread)
   thread:set("thread_id", counter)
   counter = counter + 1
   table.insert(threads, thread)
   for _, t in ipairs(threads) do
      t:set("nthreads", counter)
   end
end

local function pct(bytes)
   return (bytes:gsub(".", function(c) return string.format("%%%02X", string.byte(c)) end))
end

local function be32(n)
   return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
                      math.floor(n / 256) % 256, n % 256)
end

function init(args)
   mode = args[1] or "steady"
   peers = tonumber(args[2] or "100000")
   torrents = tonumber(args[3] or "1000")
   numwant = tonumber(args[4] or "50")
   local connection = args[5] or "keepalive"
   scrape_hashes = tonumber(args[6] or "1")
   nthreads = nthreads or 1
   headers = {}
   if connection == "close" then
      headers["Connection"] = "close"
   end
   -- Per-torrent encoded hashes, built once: request() only concatenates.
   hashes = {}
   local prefix = string.rep("\183", 16)
   for t = 0, torrents - 1 do
      hashes[t] = pct(prefix .. be32(t))
   end
   next_peer = thread_id or 0
   share = math.ceil((peers - next_peer) / nthreads)
   answered = 0
   math.randomseed(12345 + (thread_id or 0))
end

local function announce(p, event)
   local t = p % torrents
   local slot = math.floor(p / torrents)
   local left = (slot % 5 == 0) and "0" or "1000000"
   local path = "/announce?info_hash=" .. hashes[t]
      .. "&peer_id=" .. pct(string.format("-BT0001-%012d", p))
      .. "&port=" .. (10000 + slot)
      .. "&uploaded=0&downloaded=0&left=" .. left
      .. "&compact=1&numwant=" .. numwant
      .. event
   return wrk.format("GET", path, headers)
end

local function scrape()
   local parts = {}
   for i = 1, scrape_hashes do
      parts[i] = "info_hash=" .. hashes[math.random(0, torrents - 1)]
   end
   return wrk.format("GET", "/scrape?" .. table.concat(parts, "&"), headers)
end

function request()
   if mode == "scrape" then
      return scrape()
   end
   if mode == "started" then
      local p = next_peer % peers
      next_peer = next_peer + nthreads
      return announce(p, "&event=started")
   end
   return announce(math.random(0, peers - 1), "")
end

function response(status, hdrs, body)
   if mode == "started" then
      answered = answered + 1
      if answered >= share then
         io.write(string.format("WRKSTARTED %d\n", answered))
         io.flush()
         os.exit(0)
      end
   end
end

function done(summary, latency, requests)
   io.write(string.format("WRKRESULT %d %d %d %d %d %d\n",
      summary.requests,
      summary.errors.connect + summary.errors.write + summary.errors.timeout,
      summary.errors.status,
      latency:percentile(50), latency:percentile(99), summary.duration))
end
