-- Reap expired leases: free slot and lock, put the challenge back in its
-- backlog at its old place. KEYS as grant; ARGV: 1 limit, 2 queue key prefix.
-- Returns the reaped ids.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[4], id)
  local meta = redis.call('HGET', KEYS[2], id)
  local ns = string.match(id, '^([^/]+)/')
  if meta and ns then
    local score, lock = string.match(meta, '^([^|]*)|(.*)$')
    if redis.call('HGET', KEYS[3], lock) == id then
      redis.call('HDEL', KEYS[3], lock)
    end
    redis.call('ZADD', ARGV[2] .. ns, score, id)
    if redis.call('ZSCORE', KEYS[1], ns) == false then
      redis.call('ZADD', KEYS[1], 0, ns)
    end
  end
end
return ids
