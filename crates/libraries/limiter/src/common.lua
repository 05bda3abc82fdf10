-- Shared by acquire.lua and settle.lua (prepended to each): constants,
-- Redis time and the arithmetic of gcra.rs / calendar.rs, written in the same
-- expressions and order so that both stores round identically.

local P = 60000000          -- period of the per-minute limits (us)
local EPS = 1e-3            -- tolerated float error (us), as gcra.rs EPS_US
local MARGIN_MS = 3600000   -- calendar counters outlive their window by this

-- Redis time, never a replica's: all replicas agree.
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now = now_s * 1000000 + tonumber(t[2])

-- Lua's tostring keeps 14 digits; unix microseconds have 16.
local function int(x) return string.format('%.0f', x) end

local function ceil_ms(us)
  local ms = math.ceil(us / 1000)
  if ms > 0 then return ms end
  return 0
end

-- Howard Hinnant's algorithms, as in calendar.rs (all values positive).
local function civil_from_days(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- The calendar window (id, end in us) of a tpd (3) or budget (5) limit.
local function window(kind)
  local day = math.floor(now_s / 86400)
  if kind == 3 then return day, (day + 1) * 86400000000 end
  local y, m = civil_from_days(day)
  local ny, nm = y, m + 1
  if nm == 13 then ny, nm = y + 1, 1 end
  return y * 12 + m - 1, days_from_civil(ny, nm, 1) * 86400000000
end

-- max(tat, now) - now; the TAT is stored as "<whole us> <fraction>".
local function delay(key)
  local v = redis.call('GET', key)
  if not v then return 0 end
  local sp = string.find(v, ' ', 1, true)
  local d = (tonumber(string.sub(v, 1, sp - 1)) - now) + tonumber(string.sub(v, sp + 1))
  if d < 0 then return 0 end
  return d
end

-- The count of a calendar counter in window `id`, or false if the key holds
-- another window (or nothing), which counts as 0 in this one.
local function count(key, id)
  local v = redis.call('HMGET', key, 'w', 'n')
  if v[1] and tonumber(v[1]) == id then return tonumber(v[2]) end
  return false
end


-- Stores a TAT nd us after now; it expires a period after the TAT.
local function store_tat(key, nd)
  local whole = math.floor(nd)
  redis.call('SET', key, int(now + whole) .. ' ' .. string.format('%.17g', nd - whole),
    'PX', int(ceil_ms(nd) + P / 1000))
end
