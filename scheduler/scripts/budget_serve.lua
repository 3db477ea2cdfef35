-- Grant waiting requests as their budgets refill (appended to budget_lib.lua).
-- ARGV: 1 prefix, 2 max grants, 3 max steps (queue heads looked at),
--       4 lifetime of an unclaimed grant (ms)
-- Returns { now, next (when a budget can next serve, or -1), id1, id2, ... }.
--
-- For each budget that can serve (bwait score <= now), while it has a
-- unit: the namespace at the head of its ring (the least recently served)
-- offers its oldest waiting request. If the request's other budgets let
-- it through too (none paused, spent or with a queue of its own), all of
-- them are taken at once, the request is granted and its namespace goes
-- to the back of the ring. Otherwise it moves, with its score, to the
-- queue of the budget that holds it back, and the namespace keeps its
-- turn. A granted request is claimed by its next Take.
local max, steps, gttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out = { num(NOW), '-1' }
local granted, work = 0, 0

-- Grants nobody claimed in time (the order was deleted, or its messages
-- lost) are dropped; what they took stays spent, which errs on the safe side.
redis.call('ZREMRANGEBYSCORE', GRANTK, '-inf', math.floor(NOW - gttl))

local due = redis.call('ZRANGEBYSCORE', WAITK, '-inf', math.floor(NOW), 'LIMIT', 0, 64)
for _, bid in ipairs(due) do
  if granted >= max or work >= steps then break end
  local st = load(bid)
  while true do
    if st.w <= 0 then
      redis.call('ZREM', WAITK, bid)
      break
    end
    if granted >= max or work >= steps then
      -- Out of work for this call: budgets due earlier go first next time.
      redis.call('ZADD', WAITK, math.floor(NOW), bid)
      break
    end
    local at = ready(st)
    if at > NOW then
      redis.call('ZADD', WAITK, math.ceil(at), bid)
      break
    end
    local ring = redis.call('ZRANGE', rkey(bid), 0, 0)
    if #ring == 0 then
      st.w = 0 -- counted waiters without a queue: recount as none
      redis.call('ZREM', WAITK, bid)
      break
    end
    local ns = ring[1]
    local head = redis.call('ZRANGE', qkey(bid, ns), 0, 0, 'WITHSCORES')
    work = work + 1
    if #head == 0 then
      redis.call('ZREM', rkey(bid), ns)
    else
      local id, score = head[1], tonumber(head[2])
      local spec = redis.call('HGET', SPECK, id)
      dequeue(st, id, ns)
      if spec then
        local s = cjson.decode(spec)
        local others = {}
        local worst, worst_at = nil, -1
        for i, need in ipairs(s.needs) do
          if need.bid == bid then
            configure(st, need)
          else
            local o = load(need.bid)
            configure(o, need)
            others[i] = o
            if blocked(o) then
              local e = expected(o)
              if e > worst_at then worst, worst_at = o, e end
            end
          end
        end
        if worst then
          enqueue(worst, id, s.ns, score)
          save(worst)
          s.on = worst.bid
          redis.call('HSET', SPECK, id, cjson.encode(s))
        else
          for i, need in ipairs(s.needs) do
            local b = others[i] or st
            spend(b, tonumber(need.cost))
            if others[i] and (b.exists or limit(b) > 0) then save(b) end
          end
          if redis.call('EXISTS', qkey(bid, ns)) == 1 then
            redis.call('ZADD', rkey(bid), redis.call('INCR', SEQK), ns)
          end
          redis.call('HDEL', SPECK, id)
          redis.call('ZADD', GRANTK, math.floor(NOW), id)
          granted = granted + 1
          out[#out + 1] = id
        end
      end
    end
  end
  save(st)
end
if granted > 0 then
  redis.call('HINCRBY', STATK, 'served', granted)
end
local nx = redis.call('ZRANGE', WAITK, 0, 0, 'WITHSCORES')
if #nx == 2 then out[2] = nx[2] end
return out
