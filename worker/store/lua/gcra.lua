-- KEYS: tat, penalty
-- ARGV: interval_ms, tolerance_ms, cost, max_wait_ms
-- GCRA (generic cell rate algorithm) with reservation, on the server's clock, so every
-- worker on every machine shares one schedule per key.
-- KEYS[1] theoretical arrival time (ms)   KEYS[2] penalty factor (set after a provider 429)
-- ARGV[1] emission interval ms (1000 / rate)   ARGV[2] burst tolerance ms
-- ARGV[3] cost (units: 1 message, or n devices)   ARGV[4] longest acceptable wait ms
-- Returns {granted (1/0), wait ms, the slot's time in ms on the server's clock}. Granted: the slot is reserved and the caller
-- sends after the wait. Not granted: nothing is reserved; the caller comes back after the wait.
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + tonumber(now_parts[2]) / 1000
local interval = tonumber(ARGV[1])
local penalty = tonumber(redis.call('GET', KEYS[2]) or '1')
interval = interval * penalty
local cost = tonumber(ARGV[3])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allow_at = tat - tolerance
local wait = allow_at - now
if wait < 0 then wait = 0 end
if wait > tonumber(ARGV[4]) then
  return {0, tostring(wait), tostring(now + wait)}
end
local new_tat = tat + interval * cost
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now + 1000))
return {1, tostring(wait), tostring(now + wait)}
