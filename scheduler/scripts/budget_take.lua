-- Take every budget a request needs, all or none (appended to budget_lib.lua).
-- ARGV: 1 prefix, 2 id (<namespace>/<name>), 3 namespace, 4 score (older
--       first within the namespace), 5 cap on the wait before the request
--       checks back by itself (ms), 6 needs: JSON array of
--       {bid, kind, key, n, p, cost, ix}; cost 0 only checks for a unit.
-- Returns { 'granted', now, how } (how: 'now', or 'serve' when Serve
-- granted it while it waited), or the reply of waitinfo.
local id, ns, score, cap = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local needs = cjson.decode(ARGV[6])

-- Serve granted it while it waited: what it needed is already taken.
if redis.call('ZREM', GRANTK, id) == 1 then
  return { 'granted', num(NOW), 'serve' }
end

-- Waiting already: it keeps its place. Its needs are refreshed, since the
-- Issuer's limits may have changed.
local spec = redis.call('HGET', SPECK, id)
if spec then
  local s = cjson.decode(spec)
  if redis.call('ZSCORE', qkey(s.on, s.ns), id) then
    s.needs = needs
    redis.call('HSET', SPECK, id, cjson.encode(s))
    local st = load(s.on)
    for _, need in ipairs(needs) do
      if need.bid == s.on then
        configure(st, need)
        save(st)
        -- A raised limit may let Serve in sooner.
        redis.call('ZADD', WAITK, 'LT', math.floor(ready(st)), st.bid)
      end
    end
    return waitinfo(st, id, s.ns, cap)
  end
  redis.call('HDEL', SPECK, id) -- lost its queue entry: decide afresh
end

if #needs > 0 and needs[1].ix ~= '' then
  -- The index drops budgets whose hash expired (full again).
  redis.call('ZREMRANGEBYSCORE', P .. 'bidx:' .. needs[1].ix, '-inf', math.floor(NOW))
end

local sts = {}
local worst, worst_at = nil, -1
for i, need in ipairs(needs) do
  local st = load(need.bid)
  configure(st, need)
  sts[i] = st
  if blocked(st) then
    local e = expected(st)
    if e > worst_at then worst, worst_at = st, e end
  end
end

if worst == nil then
  for i, need in ipairs(needs) do
    local st = sts[i]
    local cost = tonumber(need.cost)
    if cost > 0 and (st.exists or limit(st) > 0) then
      spend(st, cost)
      save(st)
    end
  end
  redis.call('HINCRBY', STATK, 'granted', 1)
  return { 'granted', num(NOW), 'now' }
end

-- Wait on the binding budget: the one expected to let it through last.
enqueue(worst, id, ns, score)
save(worst)
redis.call('HSET', SPECK, id, cjson.encode({ ns = ns, score = score, needs = needs, on = worst.bid }))
redis.call('HINCRBY', STATK, 'waited', 1)
return waitinfo(worst, id, ns, cap)
