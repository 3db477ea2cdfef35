-- Enqueue challenges into their namespace's backlog.
-- KEYS: 1 rr (namespaces by last service), 2 meta (id -> "score|lock"),
--       3 locks, 4 inflight, 5 seq, 6 audit stream
-- ARGV: 1 audit flag ("1" records events), 2 queue key prefix, then
--       triples (id, lock, score)
-- Returns the number of challenges added.
local audit = ARGV[1] == '1'
local now = 0
if audit then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local added = 0
for i = 3, #ARGV, 3 do
  local id, lock, score = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('ZSCORE', KEYS[4], id) == false then
    local ns = string.match(id, '^([^/]+)/')
    if redis.call('ZADD', ARGV[2] .. ns, 'NX', score, id) == 1 then
      added = added + 1
      if audit then
        redis.call('XADD', KEYS[6], 'MAXLEN', '~', 2000000, '*', 'ev', 'enqueue', 'id', id, 'lock', lock, 'score', score, 'us', now)
      end
    end
    redis.call('HSET', KEYS[2], id, score .. '|' .. lock)
    -- A namespace new to the ring takes its turn after those waiting now.
    if redis.call('ZSCORE', KEYS[1], ns) == false then
      local seq = tonumber(redis.call('GET', KEYS[5]) or '0')
      redis.call('ZADD', KEYS[1], seq, ns)
    end
  end
end
return added
