-- Creates a hash only if it does not exist (a job record, a sweep).
-- KEYS: the hash. ARGV: field, value, ... Returns 1 when created, 0 when it existed.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
