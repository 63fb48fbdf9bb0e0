-- admit first applies the requests this process ended since its last
-- script (ended), then decides one request: it refills every rate bucket
-- the request is subject to, checks them and the deployment's concurrency
-- slots, and takes from all of them or from none. Below, KEYS[i] and
-- ARGV[i] count from after what ended read.
--
-- KEYS[1..n]  the rate buckets
-- KEYS[n+1]   the deployment's slots, when it has a concurrency limit: a
--             sorted set of holders, each scored by its lease's expiry
-- ARGV[1]     n
-- ARGV[3i-1], ARGV[3i], ARGV[3i+1]
--             bucket i's size in units, its refill in units per ms, and
--             what a request takes from it (60000 for a request bucket; 0
--             for a token bucket, which lets requests through while its
--             level is above 0 and is charged after the reply)
-- ARGV[3n+2]  the most requests in flight, 0 for no limit
-- ARGV[3n+3]  the lease of a slot, ms
-- ARGV[3n+4]  the holder to add
--
-- Returns {1, level_1, ..., level_n} (levels after taking) when the
-- request is admitted, else {0, i, wait_ms, level_1, ..., level_n}: bucket
-- i refuses it for wait_ms more (the bucket that refuses longest), or
-- i = n+1 when every slot is taken.
local k0, a0 = ended(1, 1)
k0, a0 = k0 - 1, a0 - 1
local n = tonumber(ARGV[a0 + 1])
local now = clock()
local levels = {}
local worst, wait = 0, 0
for i = 1, n do
  local full, rate, cost = tonumber(ARGV[a0 + 3 * i - 1]), tonumber(ARGV[a0 + 3 * i]), tonumber(ARGV[a0 + 3 * i + 1])
  local level = refill(KEYS[k0 + i], now, full, rate)
  levels[i] = level
  local w = 0
  if cost > 0 then
    if level < cost then
      w = math.ceil((cost - level) / rate)
    end
  elseif level <= 0 then
    w = math.ceil((1 - level) / rate)
  end
  if w > wait then
    worst, wait = i, w
  end
end
local max = tonumber(ARGV[a0 + 3 * n + 2])
if worst == 0 and max > 0 then
  local slots, lease = KEYS[k0 + n + 1], tonumber(ARGV[a0 + 3 * n + 3])
  -- Expired leases, of processes gone, are dropped only when they are
  -- in the way.
  if redis.call('ZCARD', slots) >= max then
    redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  end
  if redis.call('ZCARD', slots) >= max then
    worst = n + 1
  else
    redis.call('ZADD', slots, now + lease, ARGV[a0 + 3 * n + 4])
    redis.call('PEXPIRE', slots, 2 * lease)
  end
end
if worst > 0 then
  local out = {0, worst, wait}
  for i = 1, n do
    out[#out + 1] = levels[i]
  end
  return out
end
local out = {1}
for i = 1, n do
  local full, rate, cost = tonumber(ARGV[a0 + 3 * i - 1]), tonumber(ARGV[a0 + 3 * i]), tonumber(ARGV[a0 + 3 * i + 1])
  if cost > 0 then
    levels[i] = levels[i] - cost
    store(KEYS[k0 + i], now, levels[i], full, rate)
  end
  out[#out + 1] = levels[i]
end
return out
