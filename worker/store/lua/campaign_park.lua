-- KEYS: campaign, parked
-- ARGV: job
-- A job of a paused campaign stops and leaves itself here for `resume` to publish again.
-- KEYS[1] campaign hash   KEYS[2] parked jobs set   ARGV[1] the job ("task account id")
-- Returns the campaign's status; the job was parked only if that is "paused".
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'paused' then redis.call('SADD', KEYS[2], ARGV[1]) end
return status
