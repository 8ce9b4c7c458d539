"""Lua scripts of :class:`~jupyter_agentmem.stores.redis.RedisStore`.

Each script touches either keys of one session (all in the ``{id}`` hash tag,
so one Redis Cluster slot) plus, on a standalone server only, the id index;
in Cluster mode the index is updated by its own one-key script. Scripts read
time with ``TIME`` so every writer shares the server's clock.
"""

from __future__ import annotations

NOW = """
local function now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end
"""

# KEYS: doc_1..doc_n, then the index when #KEYS == n + 1 (standalone; atomic with it).
# ARGV: ttl_ms, at_ms ('' = now + ttl), then per item: id, expected revision ('' = none), payload.
# Returns {1, n, score}, {0, i, stored_rev} on a conflict, {-1, i, 0} for a foreign value.
SAVE = (
    NOW
    + """
local n = (#ARGV - 2) / 3
local ttl = tonumber(ARGV[1])
local revs, seen = {}, {}
for i = 1, n do
  local key = KEYS[i]
  local cur = seen[key]
  if cur == nil then
    local r = redis.pcall('HGET', key, 'rev')
    if type(r) == 'table' and r.err then return {-1, i, 0} end
    cur = tonumber(r)
    if cur == nil then
      if redis.call('EXISTS', key) == 1 then return {-1, i, 0} end
      cur = 0
    end
  end
  local want = ARGV[3 * i + 1]
  if want == '' or tonumber(want) == cur + 1 then
    revs[i] = cur + 1
  elseif tonumber(want) == cur and seen[key] == nil
      and redis.call('HGET', key, 'data') == ARGV[3 * i + 2] then
    revs[i] = cur  -- the retry of a write that already landed
  else
    return {0, i, cur}
  end
  seen[key] = revs[i]
end
local score = '+inf'
if ARGV[2] ~= '' then score = ARGV[2] elseif ttl > 0 then score = now_ms() + ttl end
for i = 1, n do
  local key = KEYS[i]
  redis.call('HSET', key, 'rev', revs[i], 'data', ARGV[3 * i + 2])
  if ttl > 0 then redis.call('PEXPIREAT', key, score) else redis.call('PERSIST', key) end
  if #KEYS > n then redis.call('ZADD', KEYS[n + 1], score, ARGV[3 * i]) end
end
return {1, n, score}
"""
)

# KEYS: doc, [index]. ARGV: id, ttl_ms. A read that also pushes the expiry back;
# returns {rev, data, expires_at}.
LOAD_TOUCH = (
    NOW
    + """
local v = redis.call('HMGET', KEYS[1], 'rev', 'data')
local at = 0
if v[2] then
  at = now_ms() + tonumber(ARGV[2])
  redis.call('PEXPIREAT', KEYS[1], at)
  if KEYS[2] then redis.call('ZADD', KEYS[2], at, ARGV[1]) end
end
return {v[1], v[2], at}
"""
)

# KEYS: index. ARGV: 'count' | 'list' | 'add' (then ttl_ms, id_1..id_n). Drops expired ids first;
# 'add' returns the score it gave (the expiry time in ms, or '+inf').
INDEX = (
    NOW
    + """
if ARGV[1] == 'add' then
  local ttl = tonumber(ARGV[2])
  local score = '+inf'
  if ttl > 0 then score = now_ms() + ttl end
  for i = 3, #ARGV do redis.call('ZADD', KEYS[1], score, ARGV[i]) end
  return tostring(score)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms())
if ARGV[1] == 'count' then return redis.call('ZCARD', KEYS[1]) end
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
)

# KEYS: index, doc_1..doc_n, log_1..log_n. ARGV: id_1..id_n. Returns the live ids (a document
# or a turn log), unindexes the others (deleted outside this store, or evicted by maxmemory).
# Standalone only.
PRUNE = """
local live, n = {}, #ARGV
for i = 1, n do
  if redis.call('EXISTS', KEYS[i + 1], KEYS[n + i + 1]) > 0 then live[#live + 1] = ARGV[i]
  else redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return live
"""

# KEYS: log, document, [index] (standalone). ARGV: id, ttl_ms, entry_1..entry_n.
APPEND = (
    NOW
    + """
for i = 3, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
local ttl = tonumber(ARGV[2])
local score = '+inf'
if ttl > 0 then
  score = now_ms() + ttl
  redis.call('PEXPIREAT', KEYS[1], score)
  if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIREAT', KEYS[2], score) end
end
if KEYS[3] then redis.call('ZADD', KEYS[3], score, ARGV[1]) end
return #ARGV - 2
"""
)

# KEYS: log. ARGV: JSON {writer: seq}. Drops the entries at or below their writer's mark.
COMPACT = """
local marks = cjson.decode(ARGV[1])
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local kept = {}
for _, e in ipairs(items) do
  local w, j = string.match(e, '^([^\t]*)\t(%d+)\t')
  if w == nil or marks[w] == nil or tonumber(j) > tonumber(marks[w]) then kept[#kept + 1] = e end
end
if #kept == #items then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
for _, e in ipairs(kept) do redis.call('RPUSH', KEYS[1], e) end
if ttl > 0 and #kept > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return #items - #kept
"""

# KEYS: old, new. Moves a hash written by version 1 of the key scheme, unless the new key exists.
MIGRATE = """
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
return 1
"""
