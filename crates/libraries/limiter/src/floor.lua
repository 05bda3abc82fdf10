-- Raise a monthly budget counter (a tenant's, or one of its keys') to at
-- least what the usage ledger says was spent this month; never lower it (it
-- also holds reservations the ledger does not know yet). Runs after
-- common.lua; mirrors MemoryStore::raise_budget_floor. Semantics: crate docs.
--
-- KEYS[1]   the budget counter: tenant scope or key scope
-- ARGV[1]   the month the floor is for (year * 12 + month - 1)
-- ARGV[2]   the floor (nano-USD)
-- Returns 1 if the counter was raised (or started at the floor), 0 if it
-- already held at least the floor, -1 if ARGV[1] is not the current month
-- (nothing is touched: the figure is about a window that no longer counts).

local month = tonumber(ARGV[1])
local floor = tonumber(ARGV[2])
local id, end_us = window(5)
if id ~= month then return -1 end
-- An older month's counter (or none) counts as 0 in this month.
if (count(KEYS[1], id) or 0) >= floor then return 0 end
redis.call('HSET', KEYS[1], 'w', int(id), 'n', int(floor))
redis.call('PEXPIREAT', KEYS[1], int(end_us / 1000 + MARGIN_MS))
return 1
