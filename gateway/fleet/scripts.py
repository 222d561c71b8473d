"""The Lua scripts the fleet runs in Redis: each is one round trip, and atomic.

A sliding window counts in `slots` buckets of `window / slots` seconds and sums the last
`slots + 1` of them: every span of `window` seconds lies inside those buckets, so the limit holds
over any window, not only aligned ones (it may refuse slightly early, never let more through).
Bucket indexes are hash fields; buckets that left the window are deleted as they are met.

Entries are stored as "<generation> <fresh until> <json>": a script reads the freshness and the
generation without decoding the JSON. A session's generation is bumped when it changes, and a
copy stored under an older generation is no copy at all: one INCR forgets every credential's
copy, whatever the number of credentials.
"""

from __future__ import annotations

_WINDOW = """
local function window_take(key, limit, window, slots, now, cost)
  local width = window / slots
  local current = math.floor(now / width)
  local oldest = current - slots
  local fields = redis.call('hgetall', key)
  local used, first = 0, nil
  for i = 1, #fields, 2 do
    local index = tonumber(fields[i])
    if index < oldest then
      redis.call('hdel', key, fields[i])
    else
      used = used + tonumber(fields[i + 1])
      if first == nil or index < first then first = index end
    end
  end
  if used + cost > limit then
    return {used, (first + slots + 1) * width - now}
  end
  redis.call('hincrby', key, current, cost)
  redis.call('pexpire', key, math.ceil((window + width) * 1000))
  return {used + cost, 0}
end
"""

# KEYS: counter. ARGV: limit, window, slots, now, cost. -> {used, wait} (wait "0" when taken)
TAKE = (
    _WINDOW
    + """
local r = window_take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
                      tonumber(ARGV[4]), tonumber(ARGV[5]))
return {r[1], tostring(r[2])}
"""
)

# KEYS: entry, generation, lock, budget. ARGV: now, token, lease ms, force ("1"/"0"),
# budget limit ("0": none), budget window, budget slots.
# -> {entry or nil, generation, "hit" | "held" | "fetch" | "refused", wait, budget used}
CLAIM = (
    _WINDOW
    + """
local now = tonumber(ARGV[1])
local value = redis.call('get', KEYS[1])
local gen = redis.call('get', KEYS[2]) or '0'
if value then
  local g, fresh = string.match(value, '^(%d+) ([^ ]+) ')
  if g ~= gen then
    value = false
  elseif ARGV[4] == '0' and tonumber(fresh) > now then
    return {value, gen, 'hit', '0'}
  end
end
if redis.call('exists', KEYS[3]) == 1 then
  redis.call('hset', KEYS[3], 'w', '1')
  return {value, gen, 'held', '0'}
end
local used = 0
if ARGV[5] ~= '0' then
  local r = window_take(KEYS[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), now, 1)
  if r[2] > 0 then return {value, gen, 'refused', tostring(r[2]), r[1]} end
  used = r[1]
end
redis.call('hset', KEYS[3], 't', ARGV[2])
redis.call('pexpire', KEYS[3], ARGV[3])
return {value, gen, 'fetch', '0', used}
"""
)

# KEYS: entry, lock. ARGV: value, ttl ms, token, landed channel.
# Stores the entry, and if the lock is still ours lets it go, telling waiters what landed.
SETTLE = """
redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2])
if redis.call('hget', KEYS[2], 't') == ARGV[3] then
  if redis.call('hget', KEYS[2], 'w') then
    redis.call('publish', ARGV[4], KEYS[1] .. '\\n' .. ARGV[1])
  end
  redis.call('del', KEYS[2])
end
return 1
"""

# KEYS: lock. ARGV: token, landed channel, entry key. A failed fetch lets go; waiters try again.
RELEASE = """
if redis.call('hget', KEYS[1], 't') == ARGV[1] then
  if redis.call('hget', KEYS[1], 'w') then
    redis.call('publish', ARGV[2], ARGV[3] .. '\\n')
  end
  redis.call('del', KEYS[1])
end
return 1
"""

# KEYS: entry, generation. ARGV: ttl ms, "<fresh until> <json>". A copy read elsewhere (a page).
PUT = """
local gen = redis.call('get', KEYS[2]) or '0'
redis.call('set', KEYS[1], gen .. ' ' .. ARGV[2], 'px', ARGV[1])
return 1
"""

# KEYS: generation. ARGV: ttl ms, change channel, message. A session changed: every copy goes.
BUMP = """
redis.call('incr', KEYS[1])
redis.call('pexpire', KEYS[1], ARGV[1])
redis.call('publish', ARGV[2], ARGV[3])
return 1
"""

# KEYS: memo. ARGV: pending marker, ttl ms. -> the record (or another's marker), or nil: ours.
MEMO_CLAIM = """
local value = redis.call('get', KEYS[1])
if value then return value end
redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2])
return false
"""

# KEYS: memo. ARGV: pending marker, record, ttl ms. Only over our own marker (or nothing).
MEMO_SETTLE = """
local value = redis.call('get', KEYS[1])
if value == false or value == ARGV[1] then
  redis.call('set', KEYS[1], ARGV[2], 'px', ARGV[3])
  return 1
end
return 0
"""

# KEYS: memo. ARGV: pending marker. A start that sent nothing lets its key go.
MEMO_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end
return 1
"""

SCRIPTS = {
    "take": TAKE,
    "claim": CLAIM,
    "settle": SETTLE,
    "release": RELEASE,
    "put": PUT,
    "bump": BUMP,
    "memo_claim": MEMO_CLAIM,
    "memo_settle": MEMO_SETTLE,
    "memo_release": MEMO_RELEASE,
}
