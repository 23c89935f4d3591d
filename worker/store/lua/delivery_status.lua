-- KEYS: message
-- ARGV: status, at, error
-- Apply a provider status report (sent < delivered < read; failed is terminal).
-- Reports arrive out of order and repeated, so a report never moves a message back.
-- KEYS[1] message hash
-- ARGV[1] status   ARGV[2] timestamp   ARGV[3] error text ("" if none)
-- Returns {1, rank before, campaign id or ""} when applied, {0} when ignored (older,
-- repeated, or unknown message).
local rank = {sent = 1, delivered = 2, read = 3, failed = 4}
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local new = rank[ARGV[1]]
if not new then return {0} end
local current = redis.call('HGET', KEYS[1], 'delivery_status')
local before = current and (rank[current] or 0) or 0
if before >= new then return {0} end
redis.call('HSET', KEYS[1], 'delivery_status', ARGV[1], 'delivery_status_at', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'delivery_error', ARGV[3]) end
return {1, before, redis.call('HGET', KEYS[1], 'campaign') or ''}
