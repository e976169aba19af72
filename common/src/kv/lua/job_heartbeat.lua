-- A running job's heartbeat and progress, from the worker that runs it.
-- KEYS: the record, its events channel. Returns 0 when the job is not running on that
-- worker, 1 when it goes on, 2 when a cancel was requested.
local key, events = KEYS[1], KEYS[2]
local worker, now, progress = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', key, 'state') ~= 'running' or
   redis.call('HGET', key, 'worker') ~= worker then return 0 end
redis.call('HSET', key, 'heartbeat_ms', now)
if progress ~= '' then redis.call('HSET', key, 'progress', progress) end
-- the event carries the progress (a subscriber need not read the record)
redis.call('PUBLISH', events, progress ~= '' and ('progress ' .. progress) or 'progress')
return tonumber(redis.call('HGET', key, 'cancel_requested') or '0') + 1
