-- KEYS: api_key, channel, suspension, contact, template_or_window, message, unstarted,
--   queue, optouts, delayed
-- ARGV: check_key, check_contact, template_field, parameter_count, ttl_s,
--   unstarted_member, created_at, job, fields, body_max_chars, consent_category, phone, due
-- Accept a WhatsApp send in one step: the checks the API makes, then the message record
-- and its job, atomically (no suspension or revocation can slip in between).
-- KEYS[1] the API key's record (checked only if ARGV[1] == "1")
-- KEYS[2] the account's WhatsApp channel hash   KEYS[3] its suspension
-- KEYS[4] the contact hash (checked only if ARGV[2] == "1")
-- KEYS[5] the templates hash (template send) or the 24 h window key (free-form)
-- KEYS[6] the message hash   KEYS[7] the unstarted sorted set   KEYS[8] the job queue
-- ARGV[1] check the key   ARGV[2] check the contact   ARGV[3] template field or ""
-- ARGV[4] parameter count   ARGV[5] ttl s   ARGV[6] unstarted member   ARGV[7] created_at
-- ARGV[8] the job   ARGV[9] the message's fields, a JSON object of strings
-- ARGV[10] the most characters a filled-in template body may have
-- KEYS[9] the account's opted-out numbers   ARGV[11] the category whose opt-outs refuse
-- the send ("" for none: transactional)   ARGV[12] the recipient's number
-- KEYS[10] the delayed set   ARGV[13] when the send was put off to (quiet hours), or ""
-- The message's category is set here (the template's, or free_form).
-- Returns {"ok"}, or {problem, detail}: the API turns a problem into its full error
-- (with the detail: the stored template, the suspension reason, the filled body's length).
-- include: send_lib
local refused = key_refusal(KEYS[1], ARGV[1])
if refused then return {refused, ''} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'channel_not_configured', ''} end
local suspended = redis.call('GET', KEYS[3])
if suspended then return {'channel_suspended', suspended} end
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[4]) == 0 then
  return {'contact_not_found', ''}
end
local out = opted_out(ARGV[2] == '1' and KEYS[4] or '', 'whatsapp', ARGV[11], KEYS[9], ARGV[12])
if out then return {'recipient_opted_out', out} end
local fields = cjson.decode(ARGV[9])
if ARGV[3] ~= '' then
  local template = redis.call('HGET', KEYS[5], ARGV[3])
  if not template then return {'template_not_found', ''} end
  local t = cjson.decode(template)
  if string.upper(t['status'] or '') ~= 'APPROVED'
      or tonumber(t['body_parameters'] or 0) ~= tonumber(ARGV[4]) then
    return {'template_problem', template}
  end
  local body = t['body_text']
  if type(body) == 'string' and body ~= '' then
    local params = cjson.decode(fields['parameters'] or '[]')
    local filled = string.gsub(body, '{{%s*(%d+)%s*}}', function(n)
      return params[tonumber(n)] or ''
    end)
    -- Characters, not bytes: count every byte that does not continue a UTF-8 sequence.
    local _, chars = string.gsub(filled, '[^\128-\191]', '')
    if chars > tonumber(ARGV[10]) then return {'template_body_too_long', tostring(chars)} end
  end
  -- The category goes with the message, for its usage counters (store/usage.py): the
  -- template is read here anyway, the worker need not read it again.
  local category = t['category']
  if type(category) == 'string' and category ~= '' then
    fields['category'] = string.upper(category)
  else
    fields['category'] = 'UNCATEGORIZED'
  end
elseif redis.call('EXISTS', KEYS[5]) == 0 then
  return {'template_required', ''}
else
  fields['category'] = 'free_form'
end
store_and_enqueue(KEYS[6], fields, ARGV[5], KEYS[7], ARGV[7], ARGV[6], KEYS[8], ARGV[8],
  KEYS[10], ARGV[13])
return {'ok'}
