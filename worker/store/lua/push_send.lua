-- KEYS: api_key, fcm_channel, apns_channel, contact_tokens, message, roster, unstarted,
--   queue, usage, contact, delayed
-- ARGV: check_key, fcm_bytes, apns_bytes, max_bytes, ttl_s, unstarted_member, created_at,
--   job, fields, usage_ttl_s, consent_category, due
-- Accept a push send in one step, as whatsapp_send.lua accepts a WhatsApp one: the checks
-- the API makes, then what store/push.py `create_push` writes (the roster, the message
-- record with its device count, its place among the unstarted, its job), atomically.
-- api_key: the API key's record, checked only if check_key == "1".
-- fcm_bytes, apns_bytes: the notification's payload size on each platform (computed by
-- the API, worker.models.push_payload); only the platforms the contact's devices are on
-- count against max_bytes (an iPhone-only contact is not refused for FCM's size).
-- fields: the message's fields, a JSON object of strings (device_count is set here).
-- due: when the send was put off to (quiet hours; its job waits in `delayed`), or "".
-- usage: the account's usage hash for today, where the accepted message is counted
-- (push:sent, store/usage.py), kept usage_ttl_s.
-- Returns {"ok", device count}, or {problem, detail}: key_invalid, key_revoked,
-- push_not_enabled, contact_not_found (no active token), payload_too_large (detail: the
-- platforms too large, sorted, joined by spaces).
-- include: send_lib
local refused = key_refusal(KEYS[1], ARGV[1])
if refused then return {refused, ''} end
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('EXISTS', KEYS[3]) == 0 then
  return {'push_not_enabled', ''}
end
local members = redis.call('SMEMBERS', KEYS[4])
if #members == 0 then return {'contact_not_found', ''} end
-- contact, consent_category: the contact's hash, whose opt-outs of this category refuse
-- the send (recipient_opted_out, detail: "channel:category" as stored); "" checks none.
local out = opted_out(KEYS[10], 'push', ARGV[11], '', '')
if out then return {'recipient_opted_out', out} end
-- Byte order, as Python's sorted() on these ASCII members: Lua's `<` on strings follows
-- the server's collation locale, which need not be bytewise.
table.sort(members, function(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end)
local on = {}
for _, member in ipairs(members) do
  local sep = string.find(member, ':', 1, true)
  on[sep and string.sub(member, 1, sep - 1) or member] = true
end
local sizes = {apns = tonumber(ARGV[3]), fcm = tonumber(ARGV[2])}
local too_big = {}
for _, platform in ipairs({'apns', 'fcm'}) do
  if on[platform] and sizes[platform] > tonumber(ARGV[4]) then
    too_big[#too_big + 1] = platform
  end
end
if #too_big > 0 then return {'payload_too_large', table.concat(too_big, ' ')} end
-- The roster as push.encode_roster writes it (json.dumps of [member, null, null] each):
-- cjson would differ only on a "/" (escaped), which no token the API accepts holds.
local roster = {}
for i, member in ipairs(members) do
  roster[i] = '[' .. cjson.encode(member) .. ', null, null]'
end
redis.call('SET', KEYS[6], '[' .. table.concat(roster, ', ') .. ']', 'EX', ARGV[5])
local fields = cjson.decode(ARGV[9])
fields['device_count'] = tostring(#members)
store_and_enqueue(KEYS[5], fields, ARGV[5], KEYS[7], ARGV[7], ARGV[6], KEYS[8], ARGV[8],
  KEYS[11], ARGV[12])
redis.call('HINCRBY', KEYS[9], 'push:sent', 1)
redis.call('EXPIRE', KEYS[9], ARGV[10])
return {'ok', #members}
