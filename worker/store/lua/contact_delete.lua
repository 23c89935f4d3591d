-- KEYS: contact, contacts, contact_tokens, account_tokens, contact_tags
-- ARGV: contact_id, token_prefix, tag_members_prefix
-- Delete a contact, the device tokens it owns, and its place in its tags' member sets.
-- KEYS[1] contact hash   KEYS[2] contacts sorted set   KEYS[3] contact's push-token set
-- KEYS[4] the account's set of all tokens   KEYS[5] contact's tag set
-- ARGV[1] contact id     ARGV[2] prefix of a token hash key (+ "platform:token")
-- ARGV[3] prefix of a tag's member set (+ tag)
-- Returns 1 when the contact existed.
local members = redis.call('SMEMBERS', KEYS[3])
for _, member in ipairs(members) do
  local token_key = ARGV[2] .. member
  if redis.call('HGET', token_key, 'contact') == ARGV[1] then
    redis.call('DEL', token_key)
    redis.call('SREM', KEYS[4], member)
  end
end
for _, tag in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  redis.call('ZREM', ARGV[3] .. tag, ARGV[1])
end
redis.call('DEL', KEYS[3], KEYS[5])
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
