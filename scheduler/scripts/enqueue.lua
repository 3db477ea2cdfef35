-- Enqueue challenges into their namespace's backlog.
-- KEYS: 1 rr (namespaces by last service), 2 meta (id -> "score|lock"),
--       3 locks, 4 inflight, 5 seq
-- ARGV: 1 queue key prefix, then triples (id, lock, score)
-- Returns the number of challenges added.
local added = 0
for i = 2, #ARGV, 3 do
  local id, lock, score = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('ZSCORE', KEYS[4], id) == false then
    local ns = string.match(id, '^([^/]+)/')
    if redis.call('ZADD', ARGV[1] .. ns, 'NX', score, id) == 1 then
      added = added + 1
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
