-- KEYS: delayed
-- ARGV: now, run_key, steps_key, lock_key, counts_key, definition_key, tags_key,
--   tag_members_key, delayed_member, contact_events, tag_triggers, account, outbox,
--   webhook_accounts
-- Shared by the automation scripts: `-- include: automation_lib` stands for this file.
-- KEYS[1] the delayed set
-- ARGV[1] now (seconds, as text)
-- ARGV[2..9] key templates built by worker.store.keys with "%s" for the ids: the run,
--   its steps, its lock, the automation's counts, a version's definition (automation,
--   version), a contact's tags, a tag's members, the run's member in the delayed set.
-- ARGV[10] the contact-events stream (automation triggers' outbox)
-- ARGV[11] the account's set of active automations triggered by contact.tag_added
-- ARGV[12] the account id
-- ARGV[13] the webhook outbox, ARGV[14] the accounts with webhook endpoints: a run that
--   ends (done or failed) writes automation.run.completed / .failed there, with its steps.
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
local OUTBOX, WEBHOOK_ACCOUNTS = ARGV[13], ARGV[14]
local FIRST_OWN_ARG = 15

local function key(template, ...)
  return string.format(template, ...)
end

-- What the steps recorded, written at the end (`flush`): a run's records and fields in one
-- HSET each, the counts of a whole batch summed per field. Most of a batch's commands were
-- these; Redis's CPU, not the worker's, had become the limit.
local pending = {runs = {}, order = {}}

local function pending_run(run_id)
  local run = pending.runs[run_id]
  if not run then
    run = {steps = {}, fields = {}, counts = {}}
    pending.runs[run_id] = run
    pending.order[#pending.order + 1] = run_id
  end
  return run
end

local function count(run, counts_key, field, delta)
  local c = run.counts
  c[#c + 1] = counts_key
  c[#c + 1] = field
  c[#c + 1] = delta
end

-- Step `index` of a run is over: `state` is its record's status (done, failed or
-- waiting), `record` the record (JSON). The run moves to `next_step` (nil: it ends with
-- `status`); a wait parks it in the delayed set until `due_at`. The counts per step follow.
local function record_step(run_id, automation, index, state, record, next_step, status, due_at, err)
  local run = pending_run(run_id)
  run.steps[#run.steps + 1] = tostring(index)
  run.steps[#run.steps + 1] = record
  if state ~= 'waiting' then
    local counts = key(T.counts, automation)
    count(run, counts, index .. ':waiting', -1)
    count(run, counts, index .. ':' .. state, 1)
    if next_step then count(run, counts, next_step .. ':waiting', 1) end
  end
  run.automation = automation
  run.fields.status = status
  run.fields.updated_at = NOW_TEXT
  run.fields.step = tostring(next_step or index)
  if due_at then
    run.fields.due_at = string.format('%.6f', due_at)
    run.due = due_at
  end
  if err then run.fields.error = err end
end

-- A run whose advance failed half-way: what it recorded is not written.
local function forget(run_id)
  pending.runs[run_id] = nil
end

local function flush()
  local counts = {}
  local events = {}
  local hooked = redis.call('SISMEMBER', WEBHOOK_ACCOUNTS, ACCOUNT) == 1
  for _, run_id in ipairs(pending.order) do
    local run = pending.runs[run_id]
    if run and hooked and (run.fields.status == 'done' or run.fields.status == 'failed') then
      local contact = redis.call('HGET', key(T.run, run_id), 'contact')
      local kind = run.fields.status == 'done' and 'automation.run.completed'
        or 'automation.run.failed'
      events[#events + 1] = {kind, {run_id = run_id, automation_id = run.automation,
        status = run.fields.status, contact_id = contact or cjson.null,
        error = run.fields.error or cjson.null}}
    end
    if run then
      local c = run.counts
      for i = 1, #c, 3 do
        local per_key = counts[c[i]] or {}
        counts[c[i]] = per_key
        per_key[c[i + 1]] = (per_key[c[i + 1]] or 0) + c[i + 2]
      end
      redis.call('HSET', key(T.steps, run_id), unpack(run.steps))
      local fields = {}
      for name, value in pairs(run.fields) do
        fields[#fields + 1] = name
        fields[#fields + 1] = value
      end
      redis.call('HSET', key(T.run, run_id), unpack(fields))
      if run.due then redis.call('ZADD', DELAYED, run.due, key(T.member, run_id)) end
    end
  end
  for counts_key, deltas in pairs(counts) do
    for field, delta in pairs(deltas) do
      if delta ~= 0 then redis.call('HINCRBY', counts_key, field, delta) end
    end
  end
  if #events > 0 then
    redis.call('XADD', OUTBOX, '*', 'a', ACCOUNT, 'at', NOW_TEXT, 'e', cjson.encode(events))
  end
  pending = {runs = {}, order = {}}
end
