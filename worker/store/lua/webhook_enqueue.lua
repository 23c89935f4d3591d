-- KEYS: queue, retry, index, stats, work
-- ARGV: endpoint_id, created_at, status, ttl_s, backlog_max, index_max, work_member,
--   delivery_key_template, dropped_reason, *deliveries
-- Events for one endpoint (one outbox entry's: a push slice's devices): each delivery's
-- record, its place at the end of the endpoint's queue and in its index of recent
-- deliveries; then the endpoint marked as having work due now (ZADD LT: an earlier time
-- is kept). deliveries: id, event_id, type, body for each, flat.
-- The backlog is bounded: past backlog_max deliveries waiting (queued or between
-- attempts), the oldest queued ones (else the soonest due for a retry) are dropped, marked
-- so, and counted. The index keeps the newest index_max deliveries.
-- Returns how many were dropped.
local first = 10
local ids, ranked = {}, {}
for i = first, #ARGV, 4 do
  local id = ARGV[i]
  local key = string.format(ARGV[8], id)
  redis.call('HSET', key, 'id', id, 'endpoint_id', ARGV[1], 'event_id', ARGV[i + 1],
    'type', ARGV[i + 2], 'created_at', ARGV[2], 'status', ARGV[3], 'attempts', '0',
    'body', ARGV[i + 3])
  redis.call('EXPIRE', key, ARGV[4])
  ids[#ids + 1] = id
  ranked[#ranked + 1] = ARGV[2]
  ranked[#ranked + 1] = id
end
if #ids == 0 then return 0 end
redis.call('RPUSH', KEYS[1], unpack(ids))
redis.call('ZADD', KEYS[3], unpack(ranked))
local over = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[6])
if over > 0 then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, over - 1) end
local dropped = 0
local excess = redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
while excess > 0 do
  local old = redis.call('LPOP', KEYS[1])
  if not old then
    old = redis.call('ZPOPMIN', KEYS[2])[1]
  end
  redis.call('HSET', string.format(ARGV[8], old), 'status', 'dropped', 'last_error', ARGV[9])
  dropped = dropped + 1
  excess = excess - 1
end
if dropped > 0 then redis.call('HINCRBY', KEYS[4], 'dropped', dropped) end
redis.call('ZADD', KEYS[5], 'LT', ARGV[2], ARGV[7])
return dropped
