-- KEYS: delayed
-- ARGV: now, *members
-- Remove the given members from the delayed set if they are still due, so a job that
-- was rescheduled meanwhile (a new score) stays.
-- KEYS[1] delayed set   ARGV[1] now   ARGV[2..] members
local removed = 0
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= tonumber(ARGV[1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
