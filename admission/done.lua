-- done ends an admitted request: it charges the tokens its reply used to
-- its token buckets, down to a debt of one full bucket, and releases its
-- slot.
--
-- KEYS[1..n]  the token buckets
-- KEYS[n+1]   the deployment's slots, when ARGV[3] is not ''
-- ARGV[1]     n
-- ARGV[2]     the units to charge
-- ARGV[3]     the slot's holder, or ''
-- ARGV[2i+2], ARGV[2i+3]
--             bucket i's size in units and its refill in units per ms
local n = tonumber(ARGV[1])
if n > 0 then
  local now = clock()
  local charge = tonumber(ARGV[2])
  for i = 1, n do
    local full, rate = tonumber(ARGV[2 * i + 2]), tonumber(ARGV[2 * i + 3])
    local level = math.max(refill(KEYS[i], now, full, rate) - charge, -full)
    store(KEYS[i], now, level, full, rate)
  end
end
if ARGV[3] ~= '' then
  redis.call('ZREM', KEYS[n + 1], ARGV[3])
end
return 0
