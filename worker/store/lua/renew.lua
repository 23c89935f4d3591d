-- KEYS: lock
-- ARGV: token, ttl_ms
-- Extend a lease only if it is still ours; 0 when another job holds it (or nobody does).
-- KEYS[1] lock   ARGV[1] our token   ARGV[2] new time to live, ms
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
