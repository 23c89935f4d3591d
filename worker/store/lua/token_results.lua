-- KEYS: (none)
-- ARGV: token_prefix, contact_tokens_prefix, contact_tokens_suffix, delivered_at,
--   delivered, *other_results
-- What one slice of sends did to its device tokens' counters, in one call (a command per
-- token and field would cost the client more than the send itself).
-- ARGV[1] prefix of a token hash key (+ "platform:token")
-- ARGV[2], ARGV[3] prefix and suffix of a contact's push-token set key (+ contact id)
-- ARGV[4] when the delivered ones below were delivered
-- ARGV[5] the delivered members, joined by newlines: the common case in one argument
-- (packing five arguments per device was most of the client's cost of this call)
-- then groups of 5 for any other answer: member, outcome, when, error text, owner contact
-- id ("" if none); outcome: d delivered | f failed for good | r failed, to be retried |
-- p failed, pruned (only outcomes that say something about the token are passed).
local function delivered(key, at)
  redis.call('HINCRBY', key, 'delivered', 1)
  redis.call('HSET', key, 'last_success_at', at)
end

for member in string.gmatch(ARGV[5], '[^\n]+') do
  delivered(ARGV[1] .. member, ARGV[4])
end
for i = 6, #ARGV, 5 do
  local member, outcome, at, err, owner = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local key = ARGV[1] .. member
  if outcome == 'd' then
    delivered(key, at)
  else
    if outcome ~= 'r' then redis.call('HINCRBY', key, 'failed', 1) end
    redis.call('HSET', key, 'last_failure_at', at, 'last_error', err)
    if outcome == 'p' then
      redis.call('HSET', key, 'pruned_at', at, 'prune_reason', err)
      if owner ~= '' then redis.call('SREM', ARGV[2] .. owner .. ARGV[3], member) end
    end
  end
end
return 1
