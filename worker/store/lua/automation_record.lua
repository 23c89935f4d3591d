-- KEYS: delayed
-- ARGV: now, run_key, steps_key, lock_key, counts_key, definition_key, tags_key,
--   tag_members_key, delayed_member, contact_events, tag_triggers, account, outbox,
--   webhook_accounts, run_id,
--   automation_id, step_index, record_status, record, next_step, run_status,
--   due_at, error
-- Record a step the worker executed (a send, a condition, a webhook…), atomically.
-- include: automation_lib
-- ARGV[15] run id   ARGV[16] automation id   ARGV[17] step index   ARGV[18] record status
-- ARGV[19] the record (JSON)   ARGV[20] next step ('' : the run ends)   ARGV[21] run status
-- ARGV[22] due time ('' : none)   ARGV[23] error ('' : none)
local a = FIRST_OWN_ARG
local err = ARGV[a + 8]
if err == '' then err = nil end
record_step(ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3], ARGV[a + 4],
  tonumber(ARGV[a + 5]), ARGV[a + 6], tonumber(ARGV[a + 7]), err)
flush()
return 1
