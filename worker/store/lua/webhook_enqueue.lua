-- KEYS: delivery, queue, retry, index, stats, work
-- ARGV: delivery_id, fields, created_at, ttl_s, backlog_max, index_max, work_member,
--   delivery_key_template, dropped_reason
-- One event for one endpoint: the delivery's record, its place at the end of the
-- endpoint's queue and in its index of recent deliveries, and the endpoint marked as
-- having work due now (ZADD LT: an earlier time is kept).
-- The backlog is bounded: past backlog_max deliveries waiting (queued or between
-- attempts), the oldest queued ones (else the soonest due for a retry) are dropped, marked
-- so, and counted. The index keeps the newest index_max deliveries.
-- Returns how many were dropped.
local fields = cjson.decode(ARGV[2])
local flat = {}
for name, value in pairs(fields) do
  flat[#flat + 1] = name
  flat[#flat + 1] = value
end
redis.call('HSET', KEYS[1], unpack(flat))
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
local over = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[6])
if over > 0 then redis.call('ZREMRANGEBYRANK', KEYS[4], 0, over - 1) end
local dropped = 0
local max = tonumber(ARGV[5])
while redis.call('LLEN', KEYS[2]) + redis.call('ZCARD', KEYS[3]) > max do
  local old = redis.call('LPOP', KEYS[2])
  if not old then
    old = redis.call('ZPOPMIN', KEYS[3])[1]
  end
  redis.call('HSET', string.format(ARGV[8], old), 'status', 'dropped', 'last_error', ARGV[9])
  dropped = dropped + 1
end
if dropped > 0 then redis.call('HINCRBY', KEYS[5], 'dropped', dropped) end
redis.call('ZADD', KEYS[6], 'LT', ARGV[3], ARGV[7])
return dropped
