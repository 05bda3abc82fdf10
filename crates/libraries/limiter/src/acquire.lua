-- Check every limit of one request; only if all pass, reserve them all.
-- Runs after common.lua; mirrors MemoryStore::acquire. Semantics: crate docs.
--
-- KEYS[j]      the key of limit j (bucket order, then kind order)
-- ARGV[1..4]   tokens, cost (nano-USD), lease ttl (ms), lease id
-- ARGV[3+2j]   kind of limit j: 1 rpm, 2 tpm, 3 tpd, 4 concurrent, 5 budget
-- ARGV[4+2j]   limit j
-- Returns {allowed, denied limit (1-based, 0 = none), retry ms,
--          rpm limit index, remaining, reset ms, tpm limit index, remaining, reset ms}

local tokens = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local ttl_ms = tonumber(ARGV[3])
local lease = ARGV[4]

local function amount(kind)
  if kind == 1 then return 1 end
  if kind == 5 then return cost end
  return tokens
end

-- What check() read, by key, so that apply() and the headers do not read
-- it again (every redis.call is a few microseconds of Redis's one thread).
-- apply() keeps them current, so a key shared by two limits still sees the
-- first one's reservation.
local delays = {}   -- per-minute keys: the delay (us)
local counts = {}   -- calendar keys: count() in the current window

local function read_delay(key)
  local d = delays[key]
  if d == nil then
    d = delay(key)
    delays[key] = d
  end
  return d
end

local function read_count(key, id)
  local n = counts[key]
  if n == nil then
    n = count(key, id)
    counts[key] = n
  end
  return n
end

-- nil if the request fits limit j, else the retry-after in ms.
local function check(j)
  local key, kind, limit = KEYS[j], tonumber(ARGV[3 + 2 * j]), tonumber(ARGV[4 + 2 * j])
  local c = amount(kind)
  if kind <= 2 then
    if limit == 0 or c > limit then return 60000 end
    local nd = read_delay(key) + c * P / limit
    if nd <= P + EPS then return nil end
    return math.max(1, ceil_ms(nd - P - EPS))
  elseif kind == 4 then
    -- Read-only: expired leases are dropped only when reserving.
    if redis.call('ZCOUNT', key, '(' .. int(now), '+inf') < limit then return nil end
    local first = redis.call('ZRANGEBYSCORE', key, '(' .. int(now), '+inf',
      'WITHSCORES', 'LIMIT', 0, 1)
    local retry = 1000
    if first[2] then retry = ceil_ms(tonumber(first[2]) - now) end
    return math.min(1000, math.max(1, retry))
  else
    local id, end_us = window(kind)
    if limit > 0 and (read_count(key, id) or 0) + c <= limit then return nil end
    return math.max(1, ceil_ms(end_us - now))
  end
end

-- Reserve limit j; returns the new delay of per-minute limits.
local function apply(j)
  local key, kind, limit = KEYS[j], tonumber(ARGV[3 + 2 * j]), tonumber(ARGV[4 + 2 * j])
  local c = amount(kind)
  if kind <= 2 then
    local nd = read_delay(key) + c * P / limit
    store_tat(key, nd)
    delays[key] = nd
    return nd
  elseif kind == 4 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now))
    redis.call('ZADD', key, int(now + ttl_ms * 1000), lease)
    -- The set lives as long as its longest lease.
    if redis.call('PTTL', key) < ttl_ms then redis.call('PEXPIRE', key, int(ttl_ms)) end
  else
    local id, end_us = window(kind)
    local n = read_count(key, id)
    if n then
      -- The window's counter got its expiry when the window started.
      redis.call('HINCRBY', key, 'n', int(c))
      counts[key] = n + c
    else
      redis.call('HSET', key, 'w', int(id), 'n', int(c))
      redis.call('PEXPIREAT', key, int(end_us / 1000 + MARGIN_MS))
      counts[key] = c
    end
  end
  return nil
end

local n = #KEYS
local denied, retry = 0, 0
for j = 1, n do
  local r = check(j)
  if r then
    denied, retry = j, r
    break
  end
end

-- The per-minute window with the least remaining, per kind (first on ties).
local best = { [1] = { 0, 0, 0 }, [2] = { 0, 0, 0 } }
for j = 1, n do
  local kind, limit = tonumber(ARGV[3 + 2 * j]), tonumber(ARGV[4 + 2 * j])
  local d
  if denied == 0 then
    d = apply(j)
  elseif kind <= 2 then
    d = read_delay(KEYS[j])
  end
  if d then
    local remaining = math.floor((P - d + EPS) * limit / P)
    if remaining < 0 then remaining = 0 end
    local b = best[kind]
    if b[1] == 0 or remaining < b[2] then
      best[kind] = { j, remaining, ceil_ms(d - EPS) }
    end
  end
end

return { denied == 0 and 1 or 0, denied, retry,
  best[1][1], best[1][2], best[1][3], best[2][1], best[2][2], best[2][3] }
