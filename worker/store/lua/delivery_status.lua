-- KEYS: message, usage, outbox
-- ARGV: status, at, error, usage_ttl_s, emit, account, message_id
-- Apply a provider status report (sent < delivered < read; failed is terminal).
-- Reports arrive out of order and repeated, so a report never moves a message back.
-- KEYS[1] message hash   KEYS[2] the account's usage hash for today (store/usage.py)
-- ARGV[1] status   ARGV[2] timestamp   ARGV[3] error text ("" if none)
-- ARGV[4] how long the usage hash is kept, s
-- KEYS[3] the webhook outbox, written when ARGV[5] == "1" (the account has endpoints):
-- message.delivered / message.read / message.failed for what the report moved, in the same
-- step as the change (store/events.py). ARGV[6] the account, ARGV[7] the message's id.
-- Returns {1, rank before, campaign id or ""} when applied, {0} when ignored (older,
-- repeated, or unknown message).
local rank = {sent = 1, delivered = 2, read = 3, failed = 4}
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local new = rank[ARGV[1]]
if not new then return {0} end
local current, category, template, campaign, contact, wamid = unpack(redis.call(
  'HMGET', KEYS[1], 'delivery_status', 'category', 'template_name', 'campaign', 'contact_id',
  'provider_message_id'))
local before = current and (rank[current] or 0) or 0
if before >= new then return {0} end
redis.call('HSET', KEYS[1], 'delivery_status', ARGV[1], 'delivery_status_at', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'delivery_error', ARGV[3]) end
-- Usage: only a report that moves the message forward gets here, so each is counted once
-- per message: delivered on the first report that it reached the phone (a "read" that
-- came first counts as both), read once, a failure once (it is the last rank).
-- The category as usage.category() decides it, for a message stored before it had one.
if not category then category = template and 'UNCATEGORIZED' or 'free_form' end
local counted = {}
if new == 2 or new == 3 then
  if before < 2 then counted[#counted + 1] = 'delivered' end
  if new == 3 then counted[#counted + 1] = 'read' end
elseif new == 4 then
  counted[#counted + 1] = 'delivery_failed'
end
for _, metric in ipairs(counted) do
  redis.call('HINCRBY', KEYS[2], 'wa:' .. metric .. ':' .. category, 1)
end
if #counted > 0 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
if ARGV[5] == '1' then
  -- What an event says of a message (store/messages.py event_data): ids and state only.
  local function data(status)
    local d = {message_id = ARGV[7], channel = 'whatsapp', status = status}
    if contact then d.contact_id = contact end
    if campaign then d.campaign_id = campaign end
    if template then d.template_name = template end
    if wamid then d.provider_message_id = wamid end
    if status == 'failed' and ARGV[3] ~= '' then d.error = ARGV[3] end
    return d
  end
  local batch = {}
  if new == 2 or (new == 3 and before < 2) then
    batch[#batch + 1] = {'message.delivered', data('delivered')}
  end
  if new == 3 then batch[#batch + 1] = {'message.read', data('read')} end
  if new == 4 then batch[#batch + 1] = {'message.failed', data('failed')} end
  if #batch > 0 then
    redis.call('XADD', KEYS[3], '*', 'a', ARGV[6], 'at', ARGV[2], 'e', cjson.encode(batch))
  end
end
return {1, before, campaign or ''}
