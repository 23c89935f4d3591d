-- KEYS: queue, retry, work
-- ARGV: work_member, now
-- An endpoint's sender is done for now: mark when the endpoint next has a delivery due
-- (now if its queue holds one, else its soonest retry), or take it off the work set if it
-- has none. One step, so that a delivery queued meanwhile (webhook_enqueue.lua) is never
-- left without work scheduled. Returns 1 if work remains, else 0.
if redis.call('LLEN', KEYS[1]) > 0 then
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
  return 1
end
local soonest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if soonest[2] then
  redis.call('ZADD', KEYS[3], soonest[2], ARGV[1])
  return 1
end
redis.call('ZREM', KEYS[3], ARGV[1])
return 0
