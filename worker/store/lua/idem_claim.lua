-- KEYS: record
-- ARGV: body_hash, message_id, now, ttl_s
-- Claim an idempotency key: the first caller creates the record and gets an empty answer;
-- every later caller gets the record as it stands (racing callers: exactly one wins).
-- KEYS[1] record   ARGV[1] body hash   ARGV[2] message id   ARGV[3] now   ARGV[4] ttl s
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HGETALL', KEYS[1])
end
redis.call('HSET', KEYS[1], 'body_hash', ARGV[1], 'message_id', ARGV[2], 'at', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {}
