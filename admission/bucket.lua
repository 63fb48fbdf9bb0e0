-- The buckets of package admission, as bucket.go keeps them in a process:
-- a level in units (one request or token is 60000 units) and the time of
-- its last refill, in ms of the Redis server's clock; a bucket of N per
-- minute gains N units per ms. Each bucket is a hash {l = level, t = ms};
-- a missing one is full.

local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- refill returns the level of the bucket at key at now, for a bucket that
-- holds full units and gains rate units per ms.
local function refill(key, now, full, rate)
  local v = redis.call('HMGET', key, 'l', 't')
  local level, at = tonumber(v[1]), tonumber(v[2])
  if level == nil or at == nil then
    return full
  end
  if now > at then
    local need = full - level
    if need <= 0 or now - at >= math.ceil(need / rate) then
      level = full
    else
      level = level + (now - at) * rate
    end
  end
  if level > full then
    level = full
  end
  return level
end

-- store keeps level as the bucket's at now. A full bucket is the same as
-- none, so the key lives only until the bucket would be full.
local function store(key, now, level, full, rate)
  redis.call('HSET', key, 'l', string.format('%.0f', level), 't', string.format('%.0f', now))
  redis.call('PEXPIRE', key, math.max(math.ceil((full - level) / rate), 1))
end

