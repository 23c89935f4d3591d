-- Record a step the worker executed (a send, a condition, a webhook…), atomically.
-- include: automation_lib
-- ARGV[10] run id   ARGV[11] automation id   ARGV[12] step index   ARGV[13] record status
-- ARGV[14] the record (JSON)   ARGV[15] next step ('' : the run ends)   ARGV[16] run status
-- ARGV[17] due time ('' : none)   ARGV[18] error ('' : none)
local a = FIRST_OWN_ARG
local err = ARGV[a + 8]
if err == '' then err = nil end
record_step(ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3], ARGV[a + 4],
  tonumber(ARGV[a + 5]), ARGV[a + 6], tonumber(ARGV[a + 7]), err)
return 1
