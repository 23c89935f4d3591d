-- KEYS: campaign, counts, seconds, outbox, webhook_accounts
-- ARGV: now, change, account, campaign_id
-- Add to a campaign's progress counters, and finish the campaign when nothing is left.
-- KEYS[1] campaign hash   KEYS[2] counters hash   KEYS[3] per-second hash
-- ARGV[1] now (unix seconds, float)
-- ARGV[2] JSON {"incr": {counter: n}, "set": {campaign field: value}}
-- A campaign is over once its audience walk is done and every send it planned
-- (`recipients`) is sent, failed or cancelled. Returns the campaign's status.
-- When it finishes and the account has webhook endpoints (KEYS[5] holds ARGV[3]), a
-- campaign.completed event with its final counts goes to the outbox (KEYS[4]) in this
-- same step.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local change = cjson.decode(ARGV[2])
local finished = 0
for name, n in pairs(change.incr or {}) do
  if n ~= 0 then
    redis.call('HINCRBY', KEYS[2], name, n)
    if name == 'sent' or name == 'failed' or name == 'cancelled' then finished = finished + n end
  end
end
if finished > 0 then
  local second = math.floor(tonumber(ARGV[1]))
  redis.call('HINCRBY', KEYS[3], second, finished)
  redis.call('EXPIRE', KEYS[3], 3600)
end
for name, value in pairs(change.set or {}) do
  redis.call('HSET', KEYS[1], name, value)
end
local status = redis.call('HGET', KEYS[1], 'status')
if (status == 'sending' or status == 'cancelled')
    and redis.call('HGET', KEYS[1], 'fanout_done') == '1'
    and not redis.call('HGET', KEYS[1], 'finished_at') then
  local c = redis.call('HMGET', KEYS[2], 'recipients', 'sent', 'failed', 'cancelled')
  local done = (tonumber(c[2]) or 0) + (tonumber(c[3]) or 0) + (tonumber(c[4]) or 0)
  if done >= (tonumber(c[1]) or 0) then
    if status == 'sending' then
      status = 'completed'
      redis.call('HSET', KEYS[1], 'status', status)
    end
    redis.call('HSET', KEYS[1], 'finished_at', ARGV[1], 'updated_at', ARGV[1])
    if redis.call('SISMEMBER', KEYS[5], ARGV[3]) == 1 then
      local counts = {}
      local flat = redis.call('HGETALL', KEYS[2])
      for i = 1, #flat, 2 do counts[flat[i]] = tonumber(flat[i + 1]) end
      local name, channel = unpack(redis.call('HMGET', KEYS[1], 'name', 'channel'))
      local data = {campaign_id = ARGV[4], status = status, counts = counts,
                    name = name or cjson.null, channel = channel or cjson.null}
      redis.call('XADD', KEYS[4], '*', 'a', ARGV[3], 'at', ARGV[1],
                 'e', cjson.encode({{'campaign.completed', data}}))
    end
  end
end
return status
