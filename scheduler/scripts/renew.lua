-- Renew a lease. KEYS as grant; ARGV: 1 id, 2 ttl ms. Returns 1 or 0.
if redis.call('ZSCORE', KEYS[4], ARGV[1]) == false then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[2]), ARGV[1])
return 1
