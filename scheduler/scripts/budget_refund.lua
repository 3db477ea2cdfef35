-- Give units back (appended to budget_lib.lua): the CA did not count what
-- a grant took (its new-order failed, or the order never issued).
-- ARGV: 1 prefix, 2 needs JSON [{bid, kind, key, n, p, cost, ix}]
-- Returns the number of budgets refunded.
local needs = cjson.decode(ARGV[2])
local r = 0
for _, need in ipairs(needs) do
  local st = load(need.bid)
  local cost = tonumber(need.cost)
  if st.exists and cost > 0 then
    configure(st, need)
    local n, p = limit(st)
    if n > 0 and st.tat > NOW then
      st.tat = math.max(st.tat - cost * p / n, NOW)
      save(st)
      r = r + 1
      if st.w > 0 then redis.call('ZADD', WAITK, 'LT', math.floor(ready(st)), st.bid) end
    end
  end
end
return r
