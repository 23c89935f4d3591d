-- KEYS: campaign, parked, outbox, webhook_accounts
-- ARGV: action, now, send_at, account, campaign_id
-- Move a campaign from one status to another, if the move is allowed from where it is.
-- KEYS[1] campaign hash   KEYS[2] parked jobs set
-- ARGV[1] action: send | schedule | start | pause | resume | cancel
-- ARGV[2] now   ARGV[3] send_at (schedule only)
-- Returns {ok (1/0), status after, parked jobs...}: resume and cancel hand back the jobs
-- parked while paused, for the caller to publish again (atomically emptied here, so a
-- job that parks itself later is never missed nor published twice).
-- A campaign that starts sending writes campaign.started to the webhook outbox (KEYS[3])
-- in this same step when the account has endpoints (KEYS[4] holds ARGV[4]).
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {0, ''} end
local action, now = ARGV[1], ARGV[2]
local allowed = {
  send = {draft = 'sending', scheduled = 'sending'},
  schedule = {draft = 'scheduled', scheduled = 'scheduled'},
  start = {scheduled = 'sending'},
  pause = {sending = 'paused'},
  resume = {paused = 'sending'},
  cancel = {draft = 'cancelled', scheduled = 'cancelled', sending = 'cancelled',
            paused = 'cancelled'},
}
local to = (allowed[action] or {})[status]
if not to then return {0, status} end
redis.call('HSET', KEYS[1], 'status', to, 'updated_at', now)
if action == 'send' or action == 'start' then
  redis.call('HSETNX', KEYS[1], 'started_at', now)
  if redis.call('SISMEMBER', KEYS[4], ARGV[4]) == 1 then
    local name, channel = unpack(redis.call('HMGET', KEYS[1], 'name', 'channel'))
    local data = {campaign_id = ARGV[5], status = to, name = name or cjson.null,
                  channel = channel or cjson.null}
    redis.call('XADD', KEYS[3], '*', 'a', ARGV[4], 'at', now,
               'e', cjson.encode({{'campaign.started', data}}))
  end
elseif action == 'schedule' then
  redis.call('HSET', KEYS[1], 'send_at', ARGV[3])
elseif action == 'pause' then
  redis.call('HSET', KEYS[1], 'paused_at', now)
elseif action == 'cancel' then
  redis.call('HSET', KEYS[1], 'cancelled_at', now)
  if status == 'draft' or status == 'scheduled' then
    redis.call('HSET', KEYS[1], 'finished_at', now)
  end
end
local out = {1, to}
if action == 'resume' or action == 'cancel' then
  for _, job in ipairs(redis.call('SMEMBERS', KEYS[2])) do table.insert(out, job) end
  redis.call('DEL', KEYS[2])
end
return out
