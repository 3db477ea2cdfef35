-- Grant leases to eligible challenges.
-- KEYS: 1 rr, 2 meta, 3 locks, 4 inflight, 5 seq, 6 audit stream
-- ARGV: 1 audit flag, 2 cap, 3 lease ttl ms, 4 max grants,
--       5 scan limit per namespace, 6 queue key prefix
-- Returns { now_ms, id1, seq1, score1, id2, seq2, score2, ... }.
--
-- Each grant goes to the least recently served namespace (the head of the
-- rr ring) that has an eligible challenge among the first <scan limit> of
-- its backlog, oldest first; the namespace then moves to the tail.
--
-- Cost: a grant reads only as much as it needs: the ring a page at a time
-- and each backlog in small, growing chunks (usually one id), not the whole
-- ring and <scan limit> ids. Within one call locks are only taken, never
-- freed, so what was found ineligible stays so: namespaces with nothing
-- eligible form a prefix of the ring that later rounds skip, and each
-- namespace remembers how many ids at the head of its backlog are blocked.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local audit = ARGV[1] == '1'
local cap, ttl, max, scan = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local qp = ARGV[6]
local out = { now }
local inflight = redis.call('ZCARD', KEYS[4])
local RING_PAGE = 8 -- namespaces read from the ring at a time
local FIRST_CHUNK = 4 -- ids read from a backlog at first; then 4x more

-- skip: ring entries at the head with nothing eligible in this call (the
-- namespace looked at is always the one at index skip).
local skip = 0
-- blocked[ns]: ids at the head of ns's backlog whose lock is held.
local blocked = {}

-- try looks for the oldest eligible challenge of ns among the first scan
-- ids of its backlog and grants it. Returns 'granted', 'empty' (the
-- backlog is empty: ns leaves the ring) or 'none'.
local function try(ns)
  local q = qp .. ns
  local from = blocked[ns] or 0 -- index of the next id to look at
  local budget = scan - from -- ids this look may still examine
  local chunk = FIRST_CHUNK
  local first = true
  while budget > 0 do
    local n = math.min(chunk, budget)
    local ids = redis.call('ZRANGE', q, from, from + n - 1)
    if #ids == 0 then
      if first and from == 0 then
        redis.call('ZREM', KEYS[1], ns)
        return 'empty'
      end
      break
    end
    first = false
    for _, id in ipairs(ids) do
      budget = budget - 1
      local meta = redis.call('HGET', KEYS[2], id)
      local score, lock = nil, nil
      if meta then
        score, lock = string.match(meta, '^([^|]*)|(.*)$')
      end
      if lock == nil then
        -- No metadata: a stale entry; drop it (the next id takes its index).
        redis.call('ZREM', q, id)
      elseif redis.call('HSETNX', KEYS[3], lock, id) == 1 then
        redis.call('ZREM', q, id)
        redis.call('ZADD', KEYS[4], now + ttl, id)
        local seq = redis.call('INCR', KEYS[5])
        redis.call('ZADD', KEYS[1], seq, ns)
        if redis.call('ZCARD', q) == 0 then
          redis.call('ZREM', KEYS[1], ns)
        end
        if audit then
          redis.call('XADD', KEYS[6], 'MAXLEN', '~', 2000000, '*', 'ev', 'grant', 'id', id, 'lock', lock, 'score', score, 'us', now_us)
        end
        out[#out + 1] = id
        out[#out + 1] = seq
        out[#out + 1] = tonumber(score)
        blocked[ns] = from
        return 'granted'
      else
        from = from + 1
      end
      if budget == 0 then
        break
      end
    end
    if #ids < n then
      break -- end of the backlog
    end
    chunk = chunk * 4
  end
  blocked[ns] = from
  return 'none'
end

local grants = 0
while inflight < cap and grants < max do
  -- Least recently served namespace first: round-robin across tenants.
  local granted = false
  while not granted do
    local nss = redis.call('ZRANGE', KEYS[1], skip, skip + RING_PAGE - 1)
    for _, ns in ipairs(nss) do
      local r = try(ns)
      if r == 'granted' then
        granted = true
        break
      elseif r == 'none' then
        skip = skip + 1
      end
    end
    if not granted and #nss < RING_PAGE then
      break -- end of the ring
    end
  end
  if not granted then
    break
  end
  inflight = inflight + 1
  grants = grants + 1
end
return out
