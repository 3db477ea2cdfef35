-- Release a challenge: free its slot and lock, forget it.
-- KEYS as grant; ARGV: 1 audit flag, 2 id, 3 queue key prefix.
-- Returns 1 if a lease was freed.
local id = ARGV[2]
local meta = redis.call('HGET', KEYS[2], id)
local freed = redis.call('ZREM', KEYS[4], id)
local lock = nil
if meta then
  lock = string.match(meta, '^[^|]*|(.*)$')
  if lock and redis.call('HGET', KEYS[3], lock) == id then
    redis.call('HDEL', KEYS[3], lock)
  end
  redis.call('HDEL', KEYS[2], id)
end
local ns = string.match(id, '^([^/]+)/')
local dequeued = 0
if ns then
  dequeued = redis.call('ZREM', ARGV[3] .. ns, id)
end
if ARGV[1] == '1' and freed == 0 and dequeued == 1 then
  -- Finished while waiting in the backlog (e.g. re-enqueued by a resync).
  local t = redis.call('TIME')
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', 2000000, '*', 'ev', 'dequeue', 'id', id, 'lock', lock or '', 'us', tonumber(t[1]) * 1000000 + tonumber(t[2]))
end
if ARGV[1] == '1' and freed == 1 then
  local t = redis.call('TIME')
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', 2000000, '*', 'ev', 'release', 'id', id, 'lock', lock or '', 'us', tonumber(t[1]) * 1000000 + tonumber(t[2]))
end
return freed
