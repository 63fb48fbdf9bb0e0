-- ended applies the requests this process has ended since its last script
-- (see ended in redis.go): each one's tokens are charged to its token
-- buckets, down to a debt of one full bucket, and its slot is released.
-- It reads KEYS from index k and ARGV from index a, and returns the
-- indexes after what it read.
--
-- ARGV[a]     the number of ended requests; then, for each:
--   n, the units to charge, the slot's holder or ''
--   n times: the bucket's size in units and its refill in units per ms
-- KEYS: for each ended request, its n token buckets, then its slots when
-- it held one.
local function ended(k, a)
  local count = tonumber(ARGV[a])
  a = a + 1
  local now
  for _ = 1, count do
    local n, charge, member = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2]
    a = a + 3
    for _ = 1, n do
      local full, rate = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
      a = a + 2
      now = now or clock()
      local level = math.max(refill(KEYS[k], now, full, rate) - charge, -full)
      store(KEYS[k], now, level, full, rate)
      k = k + 1
    end
    if member ~= '' then
      redis.call('ZREM', KEYS[k], member)
      k = k + 1
    end
  end
  return k, a
end
