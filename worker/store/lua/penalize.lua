-- KEYS: penalty
-- ARGV: cap, ttl_ms
-- Slow a rate-limit key down after the provider said 429: the factor doubles (up to a cap)
-- and decays by expiring.
-- KEYS[1] penalty factor   ARGV[1] cap   ARGV[2] how long it lasts (ms)
local factor = tonumber(redis.call('GET', KEYS[1]) or '1') * 2
if factor > tonumber(ARGV[1]) then factor = tonumber(ARGV[1]) end
redis.call('SET', KEYS[1], tostring(factor), 'PX', ARGV[2])
return tostring(factor)
