-- KEYS: campaign
-- ARGV: values
-- Replace a draft campaign's definition; a campaign that has left draft keeps its own.
-- KEYS[1] campaign hash   ARGV[1] JSON object of fields to set ("": remove the field)
-- Returns 1 when changed, 0 when the campaign is not (or no longer) a draft.
if redis.call('HGET', KEYS[1], 'status') ~= 'draft' then return 0 end
for name, value in pairs(cjson.decode(ARGV[1])) do
  if value == '' then
    redis.call('HDEL', KEYS[1], name)
  else
    redis.call('HSET', KEYS[1], name, value)
  end
end
return 1
