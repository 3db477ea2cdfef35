-- Renew a lease. KEYS as grant; ARGV: 1 audit flag, 2 id, 3 ttl ms.
-- Returns 1 or 0.
if redis.call('ZSCORE', KEYS[4], ARGV[2]) == false then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[3]), ARGV[2])
return 1
