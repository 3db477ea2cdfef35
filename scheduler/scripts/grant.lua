-- Grant leases to eligible challenges.
-- KEYS: 1 rr, 2 meta, 3 locks, 4 inflight, 5 seq, 6 audit stream
-- ARGV: 1 audit flag, 2 cap, 3 lease ttl ms, 4 max grants,
--       5 scan limit per namespace, 6 queue key prefix
-- Returns { now_ms, id1, seq1, score1, id2, seq2, score2, ... }.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local audit = ARGV[1] == '1'
local cap, ttl, max, scan = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local qp = ARGV[6]
local out = { now }
local inflight = redis.call('ZCARD', KEYS[4])
local done = {} -- namespaces with nothing eligible in this call
local grants = 0
while inflight < cap and grants < max do
  -- Least recently served namespace first: round-robin across tenants.
  local nss = redis.call('ZRANGE', KEYS[1], 0, -1)
  local granted = false
  for _, ns in ipairs(nss) do
    if not done[ns] then
      local q = qp .. ns
      local ids = redis.call('ZRANGE', q, 0, scan - 1)
      if #ids == 0 then
        redis.call('ZREM', KEYS[1], ns)
        done[ns] = true
      else
        for _, id in ipairs(ids) do
          local meta = redis.call('HGET', KEYS[2], id)
          local score, lock = nil, nil
          if meta then
            score, lock = string.match(meta, '^([^|]*)|(.*)$')
          end
          if lock == nil then
            -- No metadata: a stale entry; drop it.
            redis.call('ZREM', q, id)
          elseif redis.call('HSETNX', KEYS[3], lock, id) == 1 then
            redis.call('ZREM', q, id)
            redis.call('ZADD', KEYS[4], now + ttl, id)
            local seq = redis.call('INCR', KEYS[5])
            redis.call('ZADD', KEYS[1], seq, ns)
            if redis.call('ZCARD', q) == 0 then
              redis.call('ZREM', KEYS[1], ns)
            end
            if audit then
              redis.call('XADD', KEYS[6], 'MAXLEN', '~', 2000000, '*', 'ev', 'grant', 'id', id, 'lock', lock, 'score', score, 'us', now_us)
            end
            out[#out + 1] = id
            out[#out + 1] = seq
            out[#out + 1] = tonumber(score)
            inflight = inflight + 1
            grants = grants + 1
            granted = true
            break
          end
        end
        if not granted then
          done[ns] = true
        end
      end
    end
    if granted then
      break
    end
  end
  if not granted then
    break
  end
end
return out
