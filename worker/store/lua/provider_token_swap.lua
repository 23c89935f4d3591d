-- KEYS: record
-- ARGV: seen_fingerprint, new_record, ttl_s
-- Replace a signing key's shared provider token, unless another process already did.
-- KEYS[1] the key's token record ("<issued_at> <fingerprint> <sealed token>")
-- ARGV[1] the fingerprint of the token the caller saw ("" if none)
-- ARGV[2] the new record   ARGV[3] ttl s
-- Returns the record stored now.
local current = redis.call('GET', KEYS[1])
local seen = ''
if current then
  local first = string.find(current, ' ')
  local second = string.find(current, ' ', first + 1)
  seen = string.sub(current, first + 1, second - 1)
end
if seen == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return ARGV[2]
end
return current
