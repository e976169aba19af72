-- Cancels a job: a queued one at once (final, waiters told), a running one by flagging it
-- (its worker stops at the next heartbeat). KEYS: the record, its done-list, its events
-- channel. Returns the state it found ('unknown' when there is no record).
local key, done, events = KEYS[1], KEYS[2], KEYS[3]
local now = ARGV[1]
local st = redis.call('HGET', key, 'state')
if not st then return 'unknown' end
if st == 'queued' then
  -- nothing was computed: its cost is the time it queued
  local created = tonumber(redis.call('HGET', key, 'created_ms') or '') or tonumber(now)
  local cost = string.format('{"cpu_s": 0, "queue_s": %.3f, "compute_s": 0, "flops": 0, ' ..
                             '"peak_bytes": 0, "energy_j": 0, "watts_per_core": 0, ' ..
                             '"energy_method": ""}', math.max(0, (tonumber(now) - created) / 1000))
  redis.call('HSET', key, 'state', 'cancelled', 'finished_ms', now, 'cancel_requested', 1,
             'cost', cost)
  redis.call('DEL', done)
  redis.call('RPUSH', done, 'cancelled')
  local ttl = tonumber(redis.call('HGET', key, 'ttl_s') or '0')
  if ttl > 0 then redis.call('EXPIRE', key, ttl) redis.call('EXPIRE', done, ttl) end
  redis.call('PUBLISH', events, 'cancelled')
  return 'cancelled'
end
if st == 'running' then redis.call('HSET', key, 'cancel_requested', 1) end
return st
