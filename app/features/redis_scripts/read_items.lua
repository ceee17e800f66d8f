-- Read many items' packed states and their creators' distinct subscriber counts in one call.
-- KEYS: item keys. ARGV[1]: creator counts hash; ARGV[2]: 1-based byte offset of the creator
-- code in the item record; ARGV[3]: record size. Returns {states (nil when missing), counts}.
local blobs = redis.call('MGET', unpack(KEYS))
local offset = tonumber(ARGV[2])
local size = tonumber(ARGV[3])
local codes = {}
for i = 1, #KEYS do
  local b = blobs[i]
  if b and #b == size then
    codes[i] = string.format('%d', (struct.unpack('<I4', b, offset)))
  else
    codes[i] = '0'
  end
end
local counts = redis.call('HMGET', ARGV[1], unpack(codes))
return {blobs, counts}
