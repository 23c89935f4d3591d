-- Shared by the automation scripts: `-- include: automation_lib` stands for this file.
-- KEYS[1] the delayed set
-- ARGV[1] now (seconds, as text)
-- ARGV[2..9] key templates built by worker.store.keys with "%s" for the ids: the run,
--   its steps, its lock, the automation's counts, a version's definition (automation,
--   version), a contact's tags, a tag's members, the run's member in the delayed set.
-- ARGV[10] the contact-events stream (automation triggers' outbox)
-- ARGV[11] the account's set of active automations triggered by contact.tag_added
-- ARGV[12] the account id
-- (Keys are built here from the run's fields, so these scripts assume one Redis, not a
-- cluster: Sentinel or a single server, as the service runs.)
local DELAYED = KEYS[1]
local NOW_TEXT = ARGV[1]
local NOW = tonumber(ARGV[1])
local T = {
  run = ARGV[2], steps = ARGV[3], lock = ARGV[4], counts = ARGV[5], definition = ARGV[6],
  tags = ARGV[7], tag_members = ARGV[8], member = ARGV[9],
}
local CONTACT_EVENTS, TAG_TRIGGERS, ACCOUNT = ARGV[10], ARGV[11], ARGV[12]
local FIRST_OWN_ARG = 13

local function key(template, ...)
  return string.format(template, ...)
end

-- Step `index` of a run is over: `state` is its record's status (done, failed or
-- waiting), `record` the record (JSON). The run moves to `next_step` (nil: it ends with
-- `status`); a wait parks it in the delayed set until `due_at`. The counts per step follow.
local function record_step(run_id, automation, index, state, record, next_step, status, due_at, err)
  redis.call('HSET', key(T.steps, run_id), tostring(index), record)
  if state ~= 'waiting' then
    local counts = key(T.counts, automation)
    redis.call('HINCRBY', counts, index .. ':waiting', -1)
    redis.call('HINCRBY', counts, index .. ':' .. state, 1)
    if next_step then redis.call('HINCRBY', counts, next_step .. ':waiting', 1) end
  end
  local run_key = key(T.run, run_id)
  redis.call('HSET', run_key, 'status', status, 'updated_at', NOW_TEXT,
    'step', tostring(next_step or index))
  if due_at then
    redis.call('HSET', run_key, 'due_at', string.format('%.6f', due_at))
    redis.call('ZADD', DELAYED, due_at, key(T.member, run_id))
  end
  if err then redis.call('HSET', run_key, 'error', err) end
end
