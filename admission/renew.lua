-- renew extends the leases of the slots a process holds.
--
-- KEYS[i]     the slots of a deployment
-- ARGV[1]     the lease, ms
-- ARGV[i+1]   the holder in KEYS[i]
local now = clock()
local lease = tonumber(ARGV[1])
for i = 1, #KEYS do
  -- XX: a slot released or expired meanwhile is not taken again.
  redis.call('ZADD', KEYS[i], 'XX', now + lease, ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], 2 * lease)
end
return 0
