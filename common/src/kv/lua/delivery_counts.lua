-- How many times each offset of a partition was delivered, counting this delivery where
-- asked. KEYS: the partition's counts. ARGV: ttl_s, then offset, add ('1': count it), ...
-- Returns the counts, in order.
local counts = KEYS[1]
local out = {}
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == '1' then out[#out + 1] = redis.call('HINCRBY', counts, ARGV[i], 1)
  else out[#out + 1] = tonumber(redis.call('HGET', counts, ARGV[i]) or '0') end
end
redis.call('EXPIRE', counts, ARGV[1])
return out
