-- Forget a request: out of its queue, and its unclaimed grant dropped
-- (appended to budget_lib.lua). What a grant took stays spent.
-- ARGV: 1 prefix, 2 id
-- Returns 1 if the request was waiting or granted, else 0.
local id = ARGV[2]
local r = redis.call('ZREM', GRANTK, id)
local spec = redis.call('HGET', SPECK, id)
if spec then
  local s = cjson.decode(spec)
  local st = load(s.on)
  dequeue(st, id, s.ns)
  if st.exists then save(st) end
  if st.w == 0 then redis.call('ZREM', WAITK, s.on) end
  redis.call('HDEL', SPECK, id)
  r = 1
end
return r
