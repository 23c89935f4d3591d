-- KEYS: (none)
-- ARGV: contact_prefix, tokens_suffix, field_count, *fields_then_ids
-- What an audience walk needs of a page of contacts, in one call and one reply: for each
-- contact (in order) the values of the fields asked for (nil where it has none), then,
-- when asked, its push-token members joined by tabs ("" for none; tokens never hold
-- whitespace, the API refuses it). A few fields (the id, the placeholders', a segment's
-- attributes) rather than whole hashes, and one reply rather than one per contact:
-- packing and parsing commands was the walk's cost, on both sides.
-- ARGV[1] the contact hash key's prefix (+ id)
-- ARGV[2] the suffix of a contact's push-token set key (+ after prefix and id); "" for none
-- ARGV[3] n, the number of fields   ARGV[4..3+n] the fields   ARGV[4+n..] the contact ids
local prefix, suffix, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local fields = {}
for i = 1, n do fields[i] = ARGV[3 + i] end
local rows = {}
for i = 4 + n, #ARGV do
  local key = prefix .. ARGV[i]
  local row = n > 0 and redis.call('HMGET', key, unpack(fields)) or {}
  if suffix ~= '' then row[n + 1] = table.concat(redis.call('SMEMBERS', key .. suffix), '\t') end
  rows[#rows + 1] = row
end
return rows
