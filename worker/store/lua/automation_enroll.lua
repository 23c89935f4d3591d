-- KEYS: automation, enrolled, run, runs, counts, queue, run_steps, delayed
-- ARGV: contact_id, run_id, now, job, event, automation_id, delayed_member,
--   parked_record
-- Enrol a contact in an automation: checks, the run and its first job, atomically (a
-- crash leaves either nothing or a run whose job is queued).
-- KEYS[1] automation hash   KEYS[2] enrolled set   KEYS[3] run hash   KEYS[4] runs zset
-- KEYS[5] counts hash   KEYS[6] job queue   KEYS[7] the run's steps hash   KEYS[8] delayed set
-- ARGV[1] contact id   ARGV[2] run id   ARGV[3] now   ARGV[4] the job   ARGV[5] event JSON
-- ARGV[6] the automation's id
-- ARGV[7] the run's member in the delayed set
-- ARGV[8] the step record for a parked first step (JSON, "%s" for the due time)
-- When the version's first step waits some seconds (the automation's `first_wait_s`), the
-- run is parked in the delayed set at once, without a job to do it.
-- Returns {"ok", version} or {problem}: not_found, inactive, already_enrolled.
if redis.call('EXISTS', KEYS[3]) == 1 then return {'ok', 'again'} end  -- a trigger redone
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found'} end
local a = redis.call('HMGET', KEYS[1], 'active', 'allow_reentry', 'version', 'first_wait_s')
if a[1] ~= '1' then return {'inactive'} end
local added = redis.call('SADD', KEYS[2], ARGV[1])
if added == 0 and a[2] ~= '1' then return {'already_enrolled'} end
redis.call('HSET', KEYS[3], 'id', ARGV[2], 'automation', ARGV[6],
  'version', a[3], 'contact', ARGV[1], 'step', '0', 'status', 'active', 'event', ARGV[5],
  'created_at', ARGV[3], 'updated_at', ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
redis.call('HINCRBY', KEYS[5], '0:waiting', 1)
local wait = tonumber(a[4] or '0') or 0
if wait > 0 then
  local due = tonumber(ARGV[3]) + wait
  local due_text = string.format('%.6f', due)
  redis.call('HSET', KEYS[3], 'status', 'waiting', 'due_at', due_text)
  redis.call('HSET', KEYS[7], '0', string.format(ARGV[8], due_text))
  redis.call('ZADD', KEYS[8], due, ARGV[7])
else
  redis.call('LPUSH', KEYS[6], ARGV[4])
end
return {'ok', a[3]}
