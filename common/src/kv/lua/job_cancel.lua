-- Cancels a job: a queued one at once (final, waiters told), a running one by flagging it
-- (its worker stops at the next heartbeat). KEYS: the record, its done-list, its events
-- channel. Returns the state it found ('unknown' when there is no record).
local key, done, events = KEYS[1], KEYS[2], KEYS[3]
local now = ARGV[1]
local st = redis.call('HGET', key, 'state')
if not st then return 'unknown' end
if st == 'queued' then
  redis.call('HSET', key, 'state', 'cancelled', 'finished_ms', now, 'cancel_requested', 1)
  redis.call('DEL', done)
  redis.call('RPUSH', done, 'cancelled')
  local ttl = tonumber(redis.call('HGET', key, 'ttl_s') or '0')
  if ttl > 0 then redis.call('EXPIRE', key, ttl) redis.call('EXPIRE', done, ttl) end
  redis.call('PUBLISH', events, 'cancelled')
  return 'cancelled'
end
if st == 'running' then redis.call('HSET', key, 'cancel_requested', 1) end
return st
