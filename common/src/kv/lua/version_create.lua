-- A new model version, once per job: the job that made it is remembered, so a redelivered
-- job gets the version it made the first time. KEYS: the model, its versions, its jobs, its
-- aliases. ARGV: job, now, then field, value, ... of the version (without the "N." prefix).
-- Returns {version, 1 when created now}.
local model, versions, jobs, aliases = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job, now = ARGV[1], ARGV[2]
local v = redis.call('HGET', jobs, job)
if v then return {tonumber(v), 0} end
local n = redis.call('HINCRBY', model, 'next_version', 1)
redis.call('HSETNX', model, 'created_ms', now)
for i = 3, #ARGV, 2 do redis.call('HSET', versions, n .. '.' .. ARGV[i], ARGV[i + 1]) end
redis.call('HSET', jobs, job, n)
redis.call('HSET', aliases, 'latest', n)
return {n, 1}
