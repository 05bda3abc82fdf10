-- Replace a request's reservation by its actual usage; release its lease.
-- Runs after common.lua; mirrors MemoryStore::settle. Semantics: crate docs.
--
-- KEYS[1]      the lease's "settled" marker
-- KEYS[1+j]    the key of limit j (every kind but rpm, which is not refunded)
-- ARGV[1..4]   lease id, marker ttl (ms), token delta, cost delta (signed)
-- ARGV[3+2j]   kind of limit j: 2 tpm, 3 tpd, 4 concurrent, 5 budget
-- ARGV[4+2j]   limit j
-- Returns 1 if this was the first settle of the lease, else 0.

local lease = ARGV[1]
local dt = tonumber(ARGV[3])
local dc = tonumber(ARGV[4])

-- Only the first settle corrects amounts; releasing the lease is idempotent.
local fresh = redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) ~= false

for j = 1, #KEYS - 1 do
  local key, kind, limit = KEYS[1 + j], tonumber(ARGV[3 + 2 * j]), tonumber(ARGV[4 + 2 * j])
  if kind == 4 then
    redis.call('ZREM', key, lease)
  elseif fresh and kind == 2 then
    if dt ~= 0 and limit > 0 then
      local nd = delay(key) + dt * P / limit
      if nd > 0 then
        store_tat(key, nd)
      else
        -- A TAT at or before now is the same as no TAT.
        redis.call('DEL', key)
      end
    end
  elseif fresh then
    local delta = kind == 3 and dt or dc
    if delta ~= 0 then
      local id, end_us = window(kind)
      local n = count(key, id)
      if n then
        n = n + delta
        if n < 0 then n = 0 end
        redis.call('HSET', key, 'n', int(n))
      elseif delta > 0 then
        -- A refund into a window that has nothing is dropped.
        redis.call('HSET', key, 'w', int(id), 'n', int(delta))
        redis.call('PEXPIREAT', key, int(end_us / 1000 + MARGIN_MS))
      end
    end
  end
end

return fresh and 1 or 0
