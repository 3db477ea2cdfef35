-- The CA answered 429 on a budget: pause it fleet-wide (appended to
-- budget_lib.lua).
-- ARGV: 1 prefix, 2 need JSON {bid, kind, key, n, p, ix}, 3 Retry-After
--       (ms, 0 if the CA sent none), 4 and 5 the CA's own limit named in
--       its problem document (count, period ms; 0 if unknown)
-- Returns { now, paused until }.
local need = cjson.decode(ARGV[2])
local ra, on, op = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local st = load(need.bid)
configure(st, need)
if on > 0 and op > 0 then
  -- Pace by the CA's limit, where stricter, for LEARNED periods and at
  -- least LEARNED_MIN: a CA that refused once at a lower limit will again
  -- (configure forgets it when the Issuer's limit changes).
  st.on, st.op, st.oexp = on, op, NOW + math.max(op * LEARNED, LEARNED_MIN)
end
local n, p = limit(st)
if ra <= 0 then
  -- No Retry-After: wait one refill (or a second, when unlimited).
  if n > 0 then ra = p / n else ra = 1000 end
end
if NOW + ra > st.pause then st.pause = NOW + ra end
-- The CA's bucket is empty: ours too, with its next unit at the end of
-- the pause, so the fleet does not resume with a burst the CA would refuse.
if n > 0 then st.tat = math.max(st.tat, st.pause + p - p / n) end
save(st)
redis.call('HINCRBY', bkey(st.bid), 'r429', 1)
redis.call('HINCRBY', STATK, 'ratelimited', 1)
if st.w > 0 then
  redis.call('ZADD', WAITK, math.ceil(ready(st)), st.bid)
end
return { num(NOW), num(st.pause) }
