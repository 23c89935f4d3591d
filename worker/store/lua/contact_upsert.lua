-- KEYS: contact, contacts, contact_tokens, account_tokens, contact_tags, *token_keys
-- ARGV: contact_id, now, mode, fields, contact_tokens_prefix, contact_tokens_suffix,
--   tags, tag_members_prefix, contact_events, created_triggers, tag_added_triggers,
--   account, *token_members
-- Create or update one contact atomically, registering its tags and push tokens.
-- KEYS[1] contact hash   KEYS[2] contacts sorted set   KEYS[3] contact's push-token set
-- KEYS[4] the account's set of all tokens   KEYS[5] contact's tag set
-- KEYS[6..] one token hash per token in ARGV[13..]
-- ARGV[1] contact id     ARGV[2] now (unix seconds)
-- ARGV[3] mode: "create" (fail if it exists) or "upsert"
-- ARGV[4] JSON object of hash fields to set, every value a string; null deletes the field
--         (attributes are stored one field each, "attr:<name>", so a PATCH merges them)
-- ARGV[5], ARGV[6] prefix and suffix of a contact's push-token set key (to move a token)
-- ARGV[7] JSON array of tags to add   ARGV[8] prefix of a tag's member set (+ tag)
-- ARGV[9] the contact-events stream (automation triggers' outbox)
-- ARGV[10], ARGV[11] the account's sets of active automations triggered by contact.created
--   and by contact.tag_added   ARGV[12] the account id
-- ARGV[13..] push-token members ("platform:token") to add, aligned with KEYS[6..]
-- A creation or a new tag, when an active automation may want it, is written to the
-- stream in this same step (the beat enrols from it): a crash cannot lose the trigger.
-- Returns {created (1/0/-1), tokens moved from another contact}.
local exists = redis.call('EXISTS', KEYS[1]) == 1
if ARGV[3] == 'create' and exists then
  return {-1, 0}
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

-- Tags merge; each tag also lists its contacts (a sorted set, so a campaign walks a
-- segment in a stable order), which is how a segment is found.
local added_tags = {}
for _, tag in ipairs(cjson.decode(ARGV[7])) do
  if redis.call('SADD', KEYS[5], tag) == 1 then added_tags[#added_tags + 1] = tag end
  redis.call('ZADD', ARGV[8] .. tag, 0, ARGV[1])
end

-- One device, one owner: a token registered here leaves the contact that had it.
local moved = 0
for i = 13, #ARGV do
  local member = ARGV[i]
  local token_key = KEYS[i - 7]
  local owner = redis.call('HGET', token_key, 'contact')
  if owner and owner ~= ARGV[1] then
    if redis.call('SREM', ARGV[5] .. owner .. ARGV[6], member) == 1 then
      moved = moved + 1
    end
  end
  local sep = string.find(member, ':', 1, true)
  redis.call('HSET', token_key, 'platform', string.sub(member, 1, sep - 1), 'contact', ARGV[1])
  redis.call('HSETNX', token_key, 'registered_at', ARGV[2])
  -- The app registering it again (each launch, say) shows the token is alive.
  redis.call('HSET', token_key, 'last_registered_at', ARGV[2])
  -- A token registered again after being pruned is live again (the app reinstalled).
  redis.call('HDEL', token_key, 'pruned_at', 'prune_reason')
  redis.call('SADD', KEYS[3], member)
  redis.call('SADD', KEYS[4], member)
end
local wanted_created = (not exists) and redis.call('SCARD', ARGV[10]) > 0
local wanted_tags = #added_tags > 0 and redis.call('SCARD', ARGV[11]) > 0
if wanted_created or wanted_tags then
  -- Not trimmed: an entry leaves once enrolled from (XDEL), never unprocessed.
  redis.call('XADD', ARGV[9], '*', 'account', ARGV[12],
    'contact', ARGV[1], 'created', wanted_created and '1' or '0',
    'tags', wanted_tags and table.concat(added_tags, '\t') or '')
end
if exists then return {0, moved} end
return {1, moved}
