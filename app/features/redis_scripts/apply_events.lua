-- Apply one aggregated batch of engagement events atomically, exactly once per Kafka offset.
--
-- Rendered by app.features.online_store: the {{...}} placeholders are the packed layouts
-- generated from app.features.layout (one definition for Lua and numpy).
-- KEYS[1]: the offsets hash of the consumer group (field "<topic>:<partition>" -> last applied offset)
-- ARGV[1]: the batch as JSON (see online_store.EventBatch.payload)
-- Returns {1} when applied, or {0, {field, recorded}, ...} when some partition's range starts at or
-- below the recorded offset (nothing is written; the caller drops those messages and retries).
local ITEM = {{ITEM_LAYOUT}}
local CORE = {{USER_CORE_LAYOUT}}
local AFF = {{USER_AFFINITY_LAYOUT}}

local batch = cjson.decode(ARGV[1])
local okey = KEYS[1]

local conflicts = {}
for _, p in ipairs(batch.parts) do
  local rec = redis.call('HGET', okey, p[1])
  if rec and tonumber(rec) >= p[2] then
    conflicts[#conflicts + 1] = {p[1], rec}
  end
end
if #conflicts > 0 then
  return {0, unpack(conflicts)}
end

local function decode(L, blob)
  local st
  if blob and L.legacy[#blob] then  -- an earlier version of the layout (a byte prefix): zero-extend
    blob = blob .. string.rep(string.char(0), L.size - #blob)
  end
  if blob and #blob == L.size then
    st = {struct.unpack(L.fmt, blob)}
    st[L.n + 1] = nil
  else
    st = {}
    for i = 1, L.n do st[i] = 0 end
  end
  return st
end

local function encode(L, st)
  return struct.pack(L.fmt, unpack(st, 1, L.n))
end

-- Add `values` (series name -> delta) into `ring` at `bucket`; older than the slot: dropped.
local function ring_add(L, st, ring, bucket, values)
  local r = L.rings[ring]
  local slot = bucket % r.size
  local idp = L.f[ring .. '_id'][1] + slot
  local cur = st[idp]
  if cur > bucket then return end
  if cur < bucket then
    st[idp] = bucket
    for _, s in ipairs(r.series) do st[L.f[s][1] + slot] = 0 end
  end
  for s, v in pairs(values) do
    local p = L.f[ring .. '_' .. s][1] + slot
    st[p] = st[p] + v
  end
end

-- items: {key, {counter deltas in layout order}, {{hour bucket, starts}...}, {{5-min bucket, starts}...}}
local counters = batch.counters
for _, it in ipairs(batch.items) do
  local st = decode(ITEM, redis.call('GET', it[1]))
  for i, name in ipairs(counters) do
    local v = it[2][i]
    if v ~= 0 then
      local p = ITEM.f[name][1]
      st[p] = st[p] + v
    end
  end
  for _, b in ipairs(it[3]) do ring_add(ITEM, st, 'h24', b[1], {starts = b[2]}) end
  for _, b in ipairs(it[4]) do ring_add(ITEM, st, 'm5', b[1], {starts = b[2]}) end
  redis.call('SET', it[1], encode(ITEM, st))
end

-- Keep the newest time per member of zset `key` ({{score, member}...}), at most `limit` members.
local function add_newest(key, entries, limit, ttl)
  if #entries == 0 then return end
  local args = {}
  for _, r in ipairs(entries) do
    args[#args + 1] = r[1]
    args[#args + 1] = r[2]
  end
  redis.call('ZADD', key, 'GT', unpack(args))
  redis.call('ZREMRANGEBYRANK', key, 0, -(limit + 1))
  redis.call('EXPIRE', key, ttl)
end

-- users: {hash key, {{day, video, audio, consumed_s, completes, likes, dislikes}...},
--         {{session key, day}...}, {{field, day, plays}...}, {{ts s, media}...}, recent key,
--         {{ts ms, media}...} (positive engagement), positive key}
local session_ttl = batch.session_ttl_s
local user_ttl = batch.user_ttl_s
local recent_limit = batch.recent_limit
for _, u in ipairs(batch.users) do
  local key = u[1]
  local core = decode(CORE, redis.call('HGET', key, 'core'))
  for _, c in ipairs(u[2]) do
    ring_add(CORE, core, 'd7', c[1], {video = c[2], audio = c[3], consumed_s = c[4],
                                      completes = c[5], likes = c[6], dislikes = c[7]})
  end
  for _, s in ipairs(u[3]) do
    if redis.call('SET', s[1], '1', 'NX', 'EX', session_ttl) then
      ring_add(CORE, core, 'd7', s[2], {sessions = 1})
    end
  end
  redis.call('HSET', key, 'core', encode(CORE, core))
  for _, a in ipairs(u[4]) do
    local ring = decode(AFF, redis.call('HGET', key, a[1]))
    ring_add(AFF, ring, 'd7', a[2], {n = a[3]})
    redis.call('HSET', key, a[1], encode(AFF, ring))
  end
  redis.call('EXPIRE', key, user_ttl)
  add_newest(u[6], u[5], recent_limit, user_ttl)  -- media played
  add_newest(u[8], u[7], recent_limit, user_ttl)  -- media positively engaged with
end

-- subscriptions: {user subs key, user id, creator subs key, creator code, creator id}
for _, s in ipairs(batch.subs) do
  redis.call('SADD', s[1], s[5])
  if redis.call('SADD', s[3], s[2]) == 1 then
    redis.call('HINCRBY', batch.creator_counts_key, s[4], 1)
  end
end

-- active items per hour (what the trending refresh scores)
for _, a in ipairs(batch.active) do
  redis.call('SADD', a[1], unpack(a[3]))
  redis.call('EXPIRE', a[1], a[2])
end

for _, p in ipairs(batch.parts) do
  redis.call('HSET', okey, p[1], string.format('%d', p[3]))
end
return {1}
