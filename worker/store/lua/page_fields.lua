-- Some fields of a page of contacts, in one reply: for each contact (in order) the values
-- of the fields asked for (nil where it has none). An audience walk needs a few fields
-- (the id, the placeholders', a segment's attributes), not whole hashes, and one call
-- instead of a command per contact: packing the commands was the client's cost.
-- ARGV[1] the contact hash key's prefix (+ id)   ARGV[2] n, the number of fields
-- ARGV[3..2+n] the fields   ARGV[3+n..] the contact ids
local n = tonumber(ARGV[2])
local fields = {}
for i = 1, n do fields[i] = ARGV[2 + i] end
local rows = {}
for i = 3 + n, #ARGV do
  rows[#rows + 1] = redis.call('HMGET', ARGV[1] .. ARGV[i], unpack(fields))
end
return rows
