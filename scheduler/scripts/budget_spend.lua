-- Count an event the CA counts without asking (a failed validation), as
-- Boulder does: only while the budget has a unit (appended to budget_lib.lua).
-- ARGV: 1 prefix, 2 need JSON {bid, kind, key, n, p, cost, ix}
-- Returns { now, 1 if counted else 0 }.
local need = cjson.decode(ARGV[2])
local st = load(need.bid)
configure(st, need)
local n, p = limit(st)
if n <= 0 then return { num(NOW), 0 } end
local ok = 0
if math.max(st.tat, NOW) + p / n - p <= NOW then
  spend(st, tonumber(need.cost))
  ok = 1
end
save(st)
return { num(NOW), ok }
