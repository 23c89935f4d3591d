-- KEYS: wamid_index, held
-- ARGV: report, hold_s
-- Find the message a status report is about, or hold the report until the worker records
-- the wamid (atomic with the worker's MULTI that records it and takes held reports).
-- KEYS[1] the wamid index   KEYS[2] the wamid's held reports
-- ARGV[1] the report (JSON)   ARGV[2] how long to hold it (s)
-- Returns the index's value ("account message"), or false when the report was held.
local found = redis.call('GET', KEYS[1])
if found then return found end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return false
