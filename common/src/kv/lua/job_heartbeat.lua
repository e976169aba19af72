-- A running job's heartbeat and progress, from the worker that runs it.
-- KEYS: the record (one JSON object), its events channel. ARGV: worker, now (ms), progress
-- (JSON, '' for none). Returns 0 when the job is not running on that worker, 1 when it goes
-- on, 2 when a cancel was requested.
local key, events = KEYS[1], KEYS[2]
local worker, now, progress = ARGV[1], ARGV[2], ARGV[3]
local raw = redis.call('GET', key)
if not raw then return 0 end
local r = cjson.decode(raw)
if r.state ~= 'running' or r.worker ~= worker then return 0 end
r.heartbeat_ms = tonumber(now)
if progress ~= '' then r.progress = cjson.decode(progress) end
redis.call('SET', key, cjson.encode(r), 'KEEPTTL')
-- the event carries the progress (a subscriber need not read the record)
redis.call('PUBLISH', events, progress ~= '' and ('progress ' .. progress) or 'progress')
return (tonumber(r.cancel_requested) or 0) + 1
