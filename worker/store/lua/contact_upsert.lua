-- Create or update one contact atomically.
-- KEYS[1] contact hash   KEYS[2] contacts sorted set   KEYS[3] contact's push-token set
-- ARGV[1] contact id     ARGV[2] now (unix seconds)
-- ARGV[3] mode: "create" (fail if it exists) or "upsert"
-- ARGV[4] JSON object of hash fields to set, every value a string; null deletes the field
--         (attributes are stored one field each, "attr:<name>", so a PATCH merges them)
-- ARGV[5..] push-token members ("platform:token") to add
-- Returns 1 when created, 0 when updated, -1 when mode is "create" and it exists.
local exists = redis.call('EXISTS', KEYS[1]) == 1
if ARGV[3] == 'create' and exists then
  return -1
end
if not exists then
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'created_at', ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])

for name, value in pairs(cjson.decode(ARGV[4])) do
  if value == cjson.null then
    redis.call('HDEL', KEYS[1], name)
  else
    redis.call('HSET', KEYS[1], name, value)
  end
end

for i = 5, #ARGV do
  redis.call('SADD', KEYS[3], ARGV[i])
end
if exists then return 0 end
return 1
