-- Shared by every budget script: Go prepends this file to each of them.
--
-- ARGV[1] of every budget script is the key prefix (with its {hash tag});
-- the scripts build their keys from it, as the challenge scheduler's do.
--
-- A budget is a leaky bucket in GCRA form, as Boulder keeps Let's
-- Encrypt's: with n units per period p, one unit refills every T = p/n ms,
-- and the bucket holds a "theoretical arrival time" tat. A unit may be
-- taken at now when max(tat, now) + T - p <= now; taking it moves tat to
-- max(tat, now) + T. tat <= now is a full bucket, and a budget whose hash
-- has expired is full too: Redis keeps only budgets that are in use.
--
-- Keys (P is the prefix):
--   P b:<bid>        HASH  tat, pause, w (waiting), n, p (configured
--                          limit), on, op, oexp (limit learned from a 429,
--                          until oexp), r429, ix, kind, key
--   P bq:<bid>#<ns>  ZSET  orders of namespace ns waiting on bid, by score
--   P br:<bid>       ZSET  namespaces waiting on bid, by last service (ring)
--   P bwait          ZSET  bids with waiters, by when they can next serve
--   P bspec          HASH  order id -> its request (JSON) while it waits
--   P bgrant         ZSET  order id -> time Serve granted it (unclaimed)
--   P bseq           STRING service sequence of the rings
--   P bstat          HASH  fleet-wide counters (ratelimited, granted, ...)
--   P bidx:<ix>      ZSET  bids of one CA, by when their hash expires
-- Times are milliseconds of Redis' clock.
local P = ARGV[1]
local _t = redis.call('TIME')
local NOW = tonumber(_t[1]) * 1000 + tonumber(_t[2]) / 1000
local FOREVER = 1e15 -- index score of a budget that has waiters
local MARGIN = 60000 -- a budget's hash outlives its last use by this much
local LEARNED, LEARNED_MIN = 24, 3600000 -- a 429's limit lasts this long

local WAITK = P .. 'bwait'
local SPECK = P .. 'bspec'
local GRANTK = P .. 'bgrant'
local SEQK = P .. 'bseq'
local STATK = P .. 'bstat'

local function bkey(bid) return P .. 'b:' .. bid end
local function qkey(bid, ns) return P .. 'bq:' .. bid .. '#' .. ns end
local function rkey(bid) return P .. 'br:' .. bid end

-- num renders a number for Redis without losing sub-millisecond precision.
local function num(x) return string.format('%.3f', x) end

-- load reads a budget's state (a missing hash is a full, idle bucket).
local function load(bid)
  local v = redis.call('HMGET', bkey(bid), 'tat', 'pause', 'w', 'n', 'p', 'on', 'op', 'oexp', 'ix', 'kind', 'key', 'r429')
  return {
    bid = bid,
    tat = tonumber(v[1]) or 0, pause = tonumber(v[2]) or 0, w = tonumber(v[3]) or 0,
    n = tonumber(v[4]) or 0, p = tonumber(v[5]) or 0,
    on = tonumber(v[6]) or 0, op = tonumber(v[7]) or 0, oexp = tonumber(v[8]) or 0,
    ix = v[9] or '', kind = v[10] or '', key = v[11] or '', r429 = tonumber(v[12]) or 0,
    exists = v[4] ~= false,
  }
end

-- configure applies what the caller knows now: the Issuer's limit (which
-- the user may have changed) and the budget's labels.
local function configure(st, need)
  local n, p = tonumber(need.n), tonumber(need.p)
  if st.exists and (st.n ~= n or st.p ~= p) then
    -- The user changed the limit: what a 429 taught no longer applies.
    st.on, st.op, st.oexp = 0, 0, 0
  end
  st.n, st.p = n, p
  if need.ix and need.ix ~= '' then st.ix = need.ix end
  if need.kind and need.kind ~= '' then st.kind = need.kind end
  if need.key and need.key ~= '' then st.key = need.key end
end

-- limit is the effective limit: the configured one, or the CA's own if a
-- 429 taught us a stricter one within its period. n == 0 is unlimited.
local function limit(st)
  local n, p = st.n, st.p
  if n <= 0 or p <= 0 then n, p = 0, 0 end
  if st.on > 0 and st.op > 0 and st.oexp > NOW then
    if n == 0 or st.on / st.op < n / p then n, p = st.on, st.op end
  end
  return n, p
end

-- ready is the earliest time one more unit may be taken: now, the end of
-- a pause, or the next refill.
local function ready(st)
  local at = NOW
  if st.pause > at then at = st.pause end
  local n, p = limit(st)
  if n > 0 then
    local a = math.max(st.tat, NOW) + p / n - p
    if a > at then at = a end
  end
  return at
end

local function spend(st, cost)
  local n, p = limit(st)
  if n > 0 and cost > 0 then
    st.tat = math.max(st.tat, NOW) + cost * p / n
  end
end

-- save writes a budget back. A budget nobody waits on expires once full,
-- unpaused and past what it learned; one with waiters never does.
local function save(st)
  local k = bkey(st.bid)
  redis.call('HSET', k, 'tat', num(st.tat), 'pause', num(st.pause), 'w', st.w,
    'n', st.n, 'p', st.p, 'on', st.on, 'op', st.op, 'oexp', num(st.oexp),
    'ix', st.ix, 'kind', st.kind, 'key', st.key)
  local exp = FOREVER
  if st.w > 0 then
    redis.call('PERSIST', k)
  else
    exp = math.max(st.tat, st.pause, st.oexp, NOW) + MARGIN
    redis.call('PEXPIREAT', k, math.ceil(exp))
  end
  if st.ix ~= '' then
    redis.call('ZADD', P .. 'bidx:' .. st.ix, math.ceil(exp), st.bid)
  end
end

-- expected is when a new waiter on st could be served, for choosing the
-- binding budget: its next refill, plus a refill per order queued ahead.
local function expected(st)
  local at = ready(st)
  local n, p = limit(st)
  if n > 0 then at = at + st.w * p / n end
  return at
end

-- blocked reports whether st keeps a request from taking (or, for a
-- check, finding) one unit now: it is paused, spent, or others wait on it
-- (they go first).
local function blocked(st)
  if st.w > 0 or st.pause > NOW then return true end
  return ready(st) > NOW
end

-- enqueue puts order id (namespace ns, score) in st's queue. A namespace
-- new to the ring takes its turn after those waiting now.
local function enqueue(st, id, ns, score)
  if redis.call('ZADD', qkey(st.bid, ns), 'NX', score, id) == 1 then
    st.w = st.w + 1
  end
  if redis.call('ZSCORE', rkey(st.bid), ns) == false then
    local seq = tonumber(redis.call('GET', SEQK) or '0')
    redis.call('ZADD', rkey(st.bid), seq, ns)
  end
  -- Serve looks at st no later than it can serve (LT keeps an earlier time).
  redis.call('ZADD', WAITK, 'LT', math.floor(ready(st)), st.bid)
end

-- dequeue takes id out of st's queue (namespace ns); a namespace whose
-- queue empties leaves the ring.
local function dequeue(st, id, ns)
  local q = qkey(st.bid, ns)
  if redis.call('ZREM', q, id) == 1 then
    st.w = math.max(st.w - 1, 0)
  end
  if redis.call('EXISTS', q) == 0 then
    redis.call('ZREM', rkey(st.bid), ns)
  end
end

-- waitinfo is the reply about an order waiting on st.
local function waitinfo(st, id, ns, cap)
  local n, p = limit(st)
  local at = ready(st)
  -- Its turn, roughly: a refill per order ahead of it when namespaces
  -- take turns (rank in its namespace times the namespaces waiting, plus
  -- its namespace's place in the ring). Serve normally wakes it earlier;
  -- this is when it checks back by itself, at most cap from now.
  local retry = at
  if n > 0 then
    local r = redis.call('ZRANK', qkey(st.bid, ns), id) or 0
    local k = redis.call('ZCARD', rkey(st.bid))
    local pos = redis.call('ZRANK', rkey(st.bid), ns) or 0
    retry = at + (r * k + pos) * p / n
  end
  retry = math.max(at, math.min(retry, NOW + cap))
  return { 'wait', num(NOW), st.bid, st.kind, st.key, n, p, num(at), num(retry), st.w, num(st.pause) }
end
