-- Marks a sweep done with its best point. KEYS: the sweep. Returns 1, 0 (done already) or
-- -1 (no such sweep).
local sweep = KEYS[1]
local best_job, best_version, now = ARGV[1], ARGV[2], ARGV[3]
local st = redis.call('HGET', sweep, 'state')
if not st then return -1 end
if st == 'done' then return 0 end
redis.call('HSET', sweep, 'state', 'done', 'best_job', best_job, 'best_version', best_version,
           'finished_ms', now)
return 1
