-- Get-or-create dense integer codes (from 1) for names. KEYS: forward hash, reverse hash, counter.
local out = {}
for i, name in ipairs(ARGV) do
  local code = redis.call('HGET', KEYS[1], name)
  if not code then
    code = redis.call('INCR', KEYS[3])
    redis.call('HSET', KEYS[1], name, code)
    redis.call('HSET', KEYS[2], code, name)
  end
  out[i] = tonumber(code)
end
return out
