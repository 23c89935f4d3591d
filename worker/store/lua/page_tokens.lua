-- The push tokens of a page of contacts, as one string: a line per contact (in order),
-- its members separated by tabs (an empty line: no token; tokens never hold whitespace,
-- the API refuses it). One reply instead of a reply per contact: the client's parsing,
-- not Redis, was the audience walk's cost.
-- ARGV[1], ARGV[2] prefix and suffix of a contact's push-token set key; ARGV[3..] ids
local lines = {}
for i = 3, #ARGV do
  lines[#lines + 1] = table.concat(redis.call('SMEMBERS', ARGV[1] .. ARGV[i] .. ARGV[2]), '\t')
end
return table.concat(lines, '\n')
