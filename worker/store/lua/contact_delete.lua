-- Delete a contact and the device tokens it owns.
-- KEYS[1] contact hash   KEYS[2] contacts sorted set   KEYS[3] contact's push-token set
-- KEYS[4] the account's set of all tokens
-- ARGV[1] contact id     ARGV[2] prefix of a token hash key (+ "platform:token")
-- Returns 1 when the contact existed.
local members = redis.call('SMEMBERS', KEYS[3])
for _, member in ipairs(members) do
  local token_key = ARGV[2] .. member
  if redis.call('HGET', token_key, 'contact') == ARGV[1] then
    redis.call('DEL', token_key)
    redis.call('SREM', KEYS[4], member)
  end
end
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
