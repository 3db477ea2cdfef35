-- Release a challenge: free its slot and lock, forget it.
-- KEYS as grant; ARGV: 1 id, 2 queue key prefix. Returns 1 if a lease was freed.
local id = ARGV[1]
local meta = redis.call('HGET', KEYS[2], id)
local freed = redis.call('ZREM', KEYS[4], id)
if meta then
  local lock = string.match(meta, '^[^|]*|(.*)$')
  if lock and redis.call('HGET', KEYS[3], lock) == id then
    redis.call('HDEL', KEYS[3], lock)
  end
  redis.call('HDEL', KEYS[2], id)
end
local ns = string.match(id, '^([^/]+)/')
if ns then
  redis.call('ZREM', ARGV[2] .. ns, id)
end
return freed
