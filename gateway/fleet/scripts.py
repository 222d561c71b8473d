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
local function window_used(key, window, slots, now)
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
  return used, first, current, width
end

local function window_add(key, window, current, width, cost)
  redis.call('hincrby', key, current, cost)
  redis.call('pexpire', key, math.ceil((window + width) * 1000))
end

local function window_take(key, limit, window, slots, now, cost)
  local used, first, current, width = window_used(key, window, slots, now)
  if used + cost > limit then
    return {used, (first + slots + 1) * width - now}
  end
  window_add(key, window, current, width, cost)
  return {used + cost, 0}
end

-- Two windows (a budget and a caller's share of it): one more in both, or in neither.
local function pair_take(key, limit, share, share_limit, window, slots, now)
  local used, first, current, width = window_used(key, window, slots, now)
  local shared, first_shared = window_used(share, window, slots, now)
  local wait = 0
  if used + 1 > limit then wait = (first + slots + 1) * width - now end
  if shared + 1 > share_limit then
    wait = math.max(wait, (first_shared + slots + 1) * width - now)
  end
  if wait > 0 then return {used, shared, wait} end
  window_add(key, window, current, width, 1)
  window_add(share, window, current, width, 1)
  return {used + 1, shared + 1, 0}
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

# KEYS: budget, share. ARGV: limit, share limit, window, slots, now. -> {used, shared, wait}
TAKE_PAIR = (
    _WINDOW
    + """
local r = pair_take(KEYS[1], tonumber(ARGV[1]), KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]),
                    tonumber(ARGV[4]), tonumber(ARGV[5]))
return {r[1], r[2], tostring(r[3])}
"""
)

# KEYS: entry, generation, lock, budget, share, live, covered, the caller's live set.
# ARGV: now, token, lease ms, force ("1"/"0"), urgent limit ("0": no budget), window, slots,
# watched limit, rest limit, share limit, watched ("1"/"0"), uuid, live horizon (seconds),
# overdue after (seconds), overdue limit, share limits when overdue, watched and rest.
# -> {entry or nil, generation, "hit" | "held" | "fetch" | "refused", wait,
#     budget used, share used, live sessions, covered (1/0), the caller's live sessions}
#    (held: {entry or nil, generation, "held", "0", the holder's token})
# A read of a session in the live set (in-progress, polled without callbacks) marks it read
# now; the copy's absence makes a fetch urgent, a recent read or a watcher makes it "watched",
# and a copy older than "overdue after" goes one step up (its age is the entry's "s" field).
CLAIM = (
    _WINDOW
    + """
local now = tonumber(ARGV[1])
local horizon = tonumber(ARGV[13])
local value = redis.call('get', KEYS[1])
local gen = redis.call('get', KEYS[2]) or '0'
local before = redis.call('zscore', KEYS[6], ARGV[12])
if before then redis.call('zadd', KEYS[6], now, ARGV[12]) end
if redis.call('zscore', KEYS[8], ARGV[12]) then redis.call('zadd', KEYS[8], now, ARGV[12]) end
if value then
  local g, fresh = string.match(value, '^(%d+) ([^ ]+) ')
  if g ~= gen then
    value = false
  elseif ARGV[4] == '0' and tonumber(fresh) > now then
    return {value, gen, 'hit', '0'}
  end
end
local holder = redis.call('hget', KEYS[3], 't')
if holder then
  redis.call('hset', KEYS[3], 'w', '1')
  return {value, gen, 'held', '0', holder}
end
redis.call('zremrangebyscore', KEYS[6], '-inf', now - horizon)
local live = redis.call('zcard', KEYS[6])
redis.call('zremrangebyscore', KEYS[8], '-inf', now - horizon)
local mine = redis.call('zcard', KEYS[8])
local covered = redis.call('exists', KEYS[7])
local used, shared = 0, 0
if ARGV[5] ~= '0' then
  local limit, share = ARGV[5], ARGV[10]
  if value then
    local stored = tonumber(string.match(value, '"s":([^,}]+)'))
    local overdue = stored ~= nil and now - stored > tonumber(ARGV[14])
    if ARGV[11] == '1' or (before and now - tonumber(before) <= horizon) then
      if overdue then limit, share = ARGV[15], ARGV[16] else limit, share = ARGV[8], ARGV[17] end
    else
      if overdue then limit, share = ARGV[8], ARGV[17] else limit, share = ARGV[9], ARGV[18] end
    end
  end
  local r = pair_take(KEYS[4], tonumber(limit), KEYS[5], tonumber(share), tonumber(ARGV[6]),
                      tonumber(ARGV[7]), now)
  used, shared = r[1], r[2]
  if r[3] > 0 then
    return {value, gen, 'refused', tostring(r[3]), used, shared, live, covered, mine}
  end
end
redis.call('hset', KEYS[3], 't', ARGV[2])
redis.call('pexpire', KEYS[3], ARGV[3])
return {value, gen, 'fetch', '0', used, shared, live, covered, mine}
"""
)

# KEYS: entry, lock, live, the caller's live set. ARGV: value, ttl ms, token, landed channel,
# live ("add", "drop" or ""), uuid, now, live ttl ms.
# Stores the entry, and if the lock is still ours lets it go, telling waiters what landed; an
# in-progress session polled without callbacks joins the live set, any other leaves it.
SETTLE = """
redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2])
for i = 3, 4 do
  if ARGV[5] == 'add' then
    redis.call('zadd', KEYS[i], ARGV[7], ARGV[6])
    redis.call('pexpire', KEYS[i], ARGV[8])
  elseif ARGV[5] == 'drop' then
    redis.call('zrem', KEYS[i], ARGV[6])
  end
end
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
    "take_pair": TAKE_PAIR,
    "claim": CLAIM,
    "settle": SETTLE,
    "release": RELEASE,
    "put": PUT,
    "bump": BUMP,
    "memo_claim": MEMO_CLAIM,
    "memo_settle": MEMO_SETTLE,
    "memo_release": MEMO_RELEASE,
}
