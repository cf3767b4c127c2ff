"""The Lua scripts the cluster runs in Redis (data, no I/O here).

Each one is a single round trip that does a whole step atomically, with Redis's own
clock (``TIME``) so that no two nodes' clocks are ever compared. Works on Redis >= 6.2
(``ZADD GT``, ``XADD MINID``, exclusive ``XRANGE``; Debian's 7.0 has them) and Valkey.
The scripts build key names from a prefix argument, so they need one Redis (or Sentinel),
not Redis Cluster.
"""

from __future__ import annotations

__all__ = ["HEARTBEAT", "LEASE_RELEASE", "LEASE_RENEW", "PUBLISH", "PUSH_PULL", "RESYNC"]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Apply one node's batch of peer changes (records.py), append it to the change log, and
# return what the other nodes appended since ARGV[4].
# KEYS: 1 change log, 2 downloads hash, 3 the hash of each node's last batch applied.
# ARGV: 1 swarm key prefix, 2 batch, 3 node id, 4 last log id read, 5 max entries to return,
# 6 ms of log kept, 7 swarm key TTL ms, 8 this node's whole view (a batch of upserts,
# catching up; may be empty), 9 'force' to apply the view even if the log holds entries
# after ARGV[4], 10 the batch's number ('<incarnation>:<n>', n rising; '' with no batch),
# 11 when (ms, Redis clock) this node last read the log to its end (0: unknown).
# The view is applied (after the batch, as one log entry with it) only when this node has
# read the whole log: an entry it has not read may stop a peer its view still holds.
# A batch whose number is not above the last one applied for this node (a resend after a
# lost reply) is neither applied nor logged again: the reply names its entry as before.
# An upsert older than what the swarm's sorted set holds for that member (ZADD LT on the
# negated deadlines refused it: the same peer announced later elsewhere, pushed first) is
# applied nowhere: it is left out of the logged batch and returned as dropped.
# Returns {now ms, last id read, {id, batch, id, batch, ...}, gap (1: an entry after ARGV[4]
# was trimmed unread: resync), view applied (0/1), the id of this call's own entry ('' if
# none): the entries returned precede it, read to the log's end (0/1), {info-hash ..
# address of each dropped upsert}}.
PUSH_PULL = _NOW + """
local pfx = ARGV[1]
local sub, byte = string.sub, string.byte
local dropped = {}  -- info-hash .. address of the upserts left out
local function u32(blob, j)
  local a, b, c, d = byte(blob, j, j + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end
-- The batch without the upserts of ``gone`` (info-hash .. member -> true): the rare path.
local function without(blob, gone)
  local keep = {}
  local i, n = 1, #blob
  while i <= n do
    local op = byte(blob, i)
    local kind = op % 4
    local e = i + 25
    if kind ~= 2 then
      local alen = 6
      if op % 16 >= 8 then alen = 18 end
      e = i + 41 + alen
      if kind == 0 then
        e = e + 4
        if op >= 16 then e = e + 20 end
      end
      if kind == 0 and gone[sub(blob, i + 1, i + 40 + alen)] then
        dropped[#dropped + 1] = sub(blob, i + 1, i + 20 + alen)
        e = -e
      end
    end
    if e > 0 then keep[#keep + 1] = sub(blob, i, e - 1) else e = -e end
    i = e
  end
  return table.concat(keep)
end
local function apply(blob)
  local n = #blob
  local i = 1
  -- Scores go to ZADD as strings of 3-digit groups ('-' and 15 digits, leading zeros read
  -- as the same number), not as Lua numbers: Redis 7.0 formats a number argument with
  -- printf's '%.17g' (~3k instructions a score, an eighth of Redis's CPU per change) and
  -- Lua 5.1's '%d' is a C long (32 bits on 32-bit builds). The groups cost ~0.3M
  -- instructions to make: only for a batch large enough to pay for them.
  local digits = nil  -- 0 .. 999 -> '000' .. '999'
  if n >= 51 * 128 then
    local d = {}
    for a = 0, 9 do d[a] = string.char(48 + a) end
    digits = {}
    for a = 0, 9 do
      for b = 0, 9 do
        local ab = d[a] .. d[b]
        for c = 0, 9 do digits[(a * 10 + b) * 10 + c] = ab .. d[c] end
      end
    end
  end
  local adds = {}  -- info-hash -> {score, member, ...}: one ZADD per swarm, not per peer
  while i <= n do
    local op = byte(blob, i)
    local kind = op % 4
    local ih = sub(blob, i + 1, i + 20)
    i = i + 21
    if kind == 2 then
      redis.call('HINCRBY', KEYS[2], ih, u32(blob, i))
      i = i + 4
    else
      local alen = 6
      if op % 16 >= 8 then alen = 18 end
      local member = sub(blob, i, i + alen + 19)  -- address .. peer id
      i = i + alen + 20
      if kind == 1 then
        redis.call('ZREM', pfx .. ih, member)
      else
        local a, b, c, d = byte(blob, i, i + 3)
        i = i + 4
        if op >= 16 then
          redis.call('ZREM', pfx .. ih, sub(member, 1, alen) .. sub(blob, i, i + 19))
          i = i + 20
        end
        local add = adds[ih]
        if add == nil then
          add = {}
          adds[ih] = add
        end
        local k = #add
        -- negative, so that the latest word sorts first (keys.py: a re-announce, the
        -- swarm's latest deadline, is inserted at the head of a listpack set, not after a
        -- walk through it); a whole number below 2^53, exact in a Lua number
        local v = (now + ((a * 256 + b) * 256 + c) * 256 + d) * 2
        if op % 8 >= 4 then v = v + 1 end  -- a seeder
        if digits and v < 1e15 then
          local e = v % 1000
          v = (v - e) / 1000
          local f = v % 1000
          v = (v - f) / 1000
          local g = v % 1000
          v = (v - g) / 1000
          local h = v % 1000
          v = (v - h) / 1000
          add[k + 1] = '-' .. digits[v] .. digits[h] .. digits[g] .. digits[f] .. digits[e]
        else
          add[k + 1] = -v  -- Redis formats it: an exact integer string below 2^53
        end
        add[k + 2] = member
      end
    end
  end
  -- A batch holds one record per (swarm, peer): the ZREMs above and these ZADDs touch
  -- different members, so deferring the ZADDs changes nothing but the number of calls.
  local floor = '(' .. string.format('%.0f', -now * 2)  -- deadlines before now
  -- the swarm keys' expiry as a time on Redis's clock: PEXPIRE rewrites itself into this
  -- PEXPIREAT at every call (for replication), ~0.3k instructions a change more
  local expire_at = string.format('%.0f', now + tonumber(ARGV[7]))
  local gone = nil
  for ih, add in pairs(adds) do
    local key = pfx .. ih
    local changed = 0
    for j = 1, #add, 1000 do  -- unpack() is bounded by Lua's C stack
      changed = changed + redis.call('ZADD', key, 'LT', 'CH',
                                     unpack(add, j, math.min(j + 999, #add)))
    end
    if changed < #add / 2 then  -- some member holds a later word: which ones
      for j = 2, #add, 2 do
        local held = redis.call('ZSCORE', key, add[j])
        if held and tonumber(held) ~= tonumber(add[j - 1]) then
          gone = gone or {}
          gone[ih .. add[j]] = true
        end
      end
    end
    redis.call('ZREMRANGEBYSCORE', key, floor, '+inf')
    redis.call('PEXPIREAT', key, expire_at)
  end
  if gone then return without(blob, gone) end
  return blob
end
local last = ARGV[4]
local blob = ARGV[2]
local view = ARGV[8]
local viewed = 1
if #view > 0 and ARGV[9] ~= 'force' and
    #redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1) > 0 then
  viewed = 0
  view = ''
end
local own = ''
local again = false
if #blob + #view > 0 then
  local inc, seq = string.match(ARGV[10], '^(.*):(%d+)$')
  local prev = seq and redis.call('HGET', KEYS[3], ARGV[3])
  if prev then
    local pinc, pseq, pid = string.match(prev, '^(.*):(%d+) (.*)$')
    if pinc == inc and tonumber(pseq) >= tonumber(seq) then
      again = true
      own = pid
    end
  end
  if not again then
    blob = apply(blob)
    view = apply(view)
    if #blob + #view > 0 then
      own = redis.call('XADD', KEYS[1], 'MINID', '~',
                       string.format('%.0f', now - tonumber(ARGV[6])),
                       '*', 'n', ARGV[3], 'd', blob .. view)
    end
    if seq then redis.call('HSET', KEYS[3], ARGV[3], ARGV[10] .. ' ' .. own) end
  end
end
local gap = 0
local lms, lseq = string.match(last, '(%d+)-(%d+)')
lms, lseq = tonumber(lms), tonumber(lseq)
-- Every trim so far cut below now - ARGV[6]: an entry added after this node last read the
-- log to its end cannot have been trimmed (a quiet log trimmed past a node is no gap), and
-- the first entry (its whole batch copied here) is looked at only for a node that far behind.
if lms > 0 and math.max(lms, tonumber(ARGV[11])) < now - tonumber(ARGV[6]) then
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if #first > 0 then
    local fms, fseq = string.match(first[1][1], '(%d+)-(%d+)')
    fms, fseq = tonumber(fms), tonumber(fseq)
    if fms > lms or (fms == lms and fseq > lseq) then gap = 1 end
  end
end
local out = {}
local upto = '+'
if own ~= '' and not again then upto = '(' .. own end  -- not this call's own batch back
local entries = redis.call('XRANGE', KEYS[1], '(' .. last, upto, 'COUNT', ARGV[5])
for _, e in ipairs(entries) do
  last = e[1]
  local f = e[2]
  local node, data = nil, nil
  for j = 1, #f, 2 do
    if f[j] == 'n' then node = f[j + 1] elseif f[j] == 'd' then data = f[j + 1] end
  end
  if node ~= ARGV[3] and data then
    out[#out + 1] = e[1]
    out[#out + 1] = data
  end
end
local ended = 0
if #entries < tonumber(ARGV[5]) then
  ended = 1
  if own ~= '' and not again then last = own end  -- read through
end
return {string.format('%.0f', now), last, out, gap, viewed, own, ended, dropped}
"""

# Everything Redis holds for the swarms of ARGV[2..] (info-hashes), and where the change
# log ends now (read from there on). KEYS: 1 change log, 2 downloads hash.
# ARGV: 1 swarm key prefix, 2.. info-hashes.
# Returns {now ms, last log id, {members-with-scores of hash 1, downloads of hash 1, ...}}.
RESYNC = _NOW + """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local lastid = '0-0'
if #last > 0 then lastid = last[1][1] end
local floor = string.format('%.0f', -now * 2)  -- deadlines from now on
local out = {}
for j = 2, #ARGV do
  local key = ARGV[1] .. ARGV[j]
  out[#out + 1] = redis.call('ZRANGEBYSCORE', key, '-inf', floor, 'WITHSCORES')
  out[#out + 1] = redis.call('HGET', KEYS[2], ARGV[j]) or ''
end
return {string.format('%.0f', now), lastid, out}
"""

# A node's heartbeat: record it (Redis clock), forget nodes silent for ARGV[2] ms, and
# return the live node ids. KEYS: 1 node set. ARGV: 1 node id, 2 dead after ms,
# 3 "leave" to remove this node (a clean shutdown) instead.
HEARTBEAT = _NOW + """
if ARGV[3] == 'leave' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now, ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# Extend a lease this node holds. KEYS: 1 lease. ARGV: 1 token, 2 ms. Returns 1 if held.
LEASE_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Give a lease back, only if this node still holds it. KEYS: 1 lease. ARGV: 1 token.
LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Record a catalog change and tell the other nodes. KEYS: 1 record, 2 catalog log.
# ARGV: 1 node id, 2 'put' or 'del', 3 record name, 4 the record (put), 5 log entries kept.
PUBLISH = """
if ARGV[2] == 'put' then
  redis.call('SET', KEYS[1], ARGV[4])
else
  redis.call('DEL', KEYS[1])
end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'n', ARGV[1], 'o', ARGV[2],
                  'k', ARGV[3])
"""
