-- Reap expired leases: free slot and lock, put the challenge back in its
-- backlog at its old place. KEYS as grant; ARGV: 1 audit flag, 2 limit,
-- 3 queue key prefix.
-- Returns the reaped ids.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ids = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[4], id)
  local meta = redis.call('HGET', KEYS[2], id)
  local ns = string.match(id, '^([^/]+)/')
  if meta and ns then
    local score, lock = string.match(meta, '^([^|]*)|(.*)$')
    if redis.call('HGET', KEYS[3], lock) == id then
      redis.call('HDEL', KEYS[3], lock)
    end
    redis.call('ZADD', ARGV[3] .. ns, score, id)
    if ARGV[1] == '1' then
      redis.call('XADD', KEYS[6], 'MAXLEN', '~', 2000000, '*', 'ev', 'reap', 'id', id, 'lock', lock, 'score', score, 'us', now_us)
    end
    if redis.call('ZSCORE', KEYS[1], ns) == false then
      redis.call('ZADD', KEYS[1], 0, ns)
    end
  end
end
return ids
