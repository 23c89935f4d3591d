-- KEYS: counts
-- ARGV: sender, max, ttl_s, *contacts
-- Frequency caps: one window's sends per contact on one channel, in a hash (contact →
-- the senders counted, tab-separated: a campaign's id, an automation run's). A contact
-- takes a place when it has fewer than `max` senders counted, or when `sender` is among
-- them already (a page walked again after a crash does not count twice).
-- Returns, aligned with `contacts`, 1 (allowed: counted) or 0 (over the cap).
local out = {}
local max = tonumber(ARGV[2])
for i = 4, #ARGV do
  local contact = ARGV[i]
  local seen = redis.call('HGET', KEYS[1], contact)
  local allowed = 0
  if not seen then
    redis.call('HSET', KEYS[1], contact, ARGV[1])
    allowed = 1
  else
    local n, already = 0, false
    for sender in string.gmatch(seen, '[^\t]+') do
      n = n + 1
      if sender == ARGV[1] then already = true end
    end
    if already then
      allowed = 1
    elseif n < max then
      redis.call('HSET', KEYS[1], contact, seen .. '\t' .. ARGV[1])
      allowed = 1
    end
  end
  out[#out + 1] = allowed
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return out
