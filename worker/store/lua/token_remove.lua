-- KEYS: contact_tokens, token, account_tokens
-- ARGV: member
-- Remove one device token from a contact (the app unregistered it).
-- KEYS[1] contact's push-token set   KEYS[2] token hash   KEYS[3] the account's token set
-- ARGV[1] member ("platform:token")
-- Returns 1 when the contact had it.
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
