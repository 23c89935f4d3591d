-- KEYS: (none)
-- ARGV: (none)
-- Shared by the two send scripts (whatsapp_send, push_send): `-- include: send_lib`
-- stands for this file. Functions only: each script passes its own KEYS and ARGV.

-- The API key's refusal, when the key came from the API's memory and must be read
-- again (check == "1"): key_invalid (gone), key_revoked, or nil when it is usable.
local function key_refusal(key, check)
  if check ~= '1' then return nil end
  local raw = redis.call('GET', key)
  if not raw then return 'key_invalid' end
  local revoked = cjson.decode(raw)['revoked_at']
  if revoked and revoked ~= cjson.null then return 'key_revoked' end
  return nil
end

-- The opt-out that refuses a send of `category` on `channel` ("whatsapp" or "push"), or
-- nil; no category ("") asks for no check (a transactional send). The contact's own
-- opt-outs are fields of its hash, "optout:<channel or *>:<category or *>"; a WhatsApp
-- number that wrote an opt-out keyword is in the account's `optouts` hash (its marketing).
-- Mirrors worker/store/preferences.py `opted_out`.
local function opted_out(contact_key, channel, category, optouts_key, phone)
  if category == '' then return nil end
  if contact_key ~= '' then
    local names = {channel .. ':' .. category, channel .. ':*', '*:' .. category, '*:*'}
    local found = redis.call('HMGET', contact_key, 'optout:' .. names[1],
      'optout:' .. names[2], 'optout:' .. names[3], 'optout:' .. names[4])
    for i = 1, 4 do
      if found[i] then return names[i] end
    end
  end
  if phone ~= '' and category == 'marketing'
      and redis.call('HEXISTS', optouts_key, phone) == 1 then
    return 'whatsapp:marketing'
  end
  return nil
end

-- The accepted message: its record (a table of strings) for ttl seconds, its place among
-- the unstarted (scored by its creation time), and its job on its queue — or, put off to
-- `due` (quiet hours; "" for now), its job in the delayed set until then (`member`).
local function store_and_enqueue(message_key, fields, ttl, unstarted_key, created_at,
                                 member, queue_key, job, delayed_key, due)
  local flat = {}
  for name, value in pairs(fields) do
    flat[#flat + 1] = name
    flat[#flat + 1] = value
  end
  redis.call('HSET', message_key, unpack(flat))
  redis.call('EXPIRE', message_key, ttl)
  if due ~= '' then
    redis.call('ZADD', unstarted_key, due, member)
    redis.call('ZADD', delayed_key, due, member)
  else
    redis.call('ZADD', unstarted_key, created_at, member)
    redis.call('LPUSH', queue_key, job)
  end
end
