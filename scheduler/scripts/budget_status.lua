-- The budgets of one CA in use, most constrained first: those with
-- waiters, then by how long until they are full (appended to budget_lib.lua).
-- ARGV: 1 prefix, 2 index (the CA), 3 max budgets returned
-- Returns { now, total, then per budget: bid, kind, key, n, p (configured),
--   en, ep (effective), tat, pause, waiting, 429s }.
local ixk = P .. 'bidx:' .. ARGV[2]
redis.call('ZREMRANGEBYSCORE', ixk, '-inf', math.floor(NOW))
local out = { num(NOW), redis.call('ZCARD', ixk) }
for _, bid in ipairs(redis.call('ZREVRANGE', ixk, 0, tonumber(ARGV[3]) - 1)) do
  local st = load(bid)
  if not st.exists then
    -- Gone before its index entry (expired early, or lost): forget it.
    redis.call('ZREM', ixk, bid)
    out[2] = out[2] - 1
  else
    local n, p = limit(st)
    for _, v in ipairs({ bid, st.kind, st.key, st.n, st.p, n, p, num(st.tat), num(st.pause), st.w, st.r429 }) do
      out[#out + 1] = v
    end
  end
end
return out
