-- Cancels a job: a queued one at once (final, waiters told), a running one by flagging it
-- (its worker stops at the next heartbeat). KEYS: the record (one JSON object), its
-- done-list, its events channel. ARGV: now (ms). Returns the state it found ('unknown' when
-- there is no record).
local key, done, events = KEYS[1], KEYS[2], KEYS[3]
local now = tonumber(ARGV[1])
local raw = redis.call('GET', key)
if not raw then return 'unknown' end
local r = cjson.decode(raw)
local st = r.state
if st == 'queued' then
  -- nothing was computed: its cost is the time it queued
  local created = tonumber(r.created_ms) or now
  r.state, r.finished_ms, r.cancel_requested = 'cancelled', now, 1
  r.cost = {cpu_s = 0, queue_s = math.max(0, (now - created) / 1000), compute_s = 0, flops = 0,
            peak_bytes = 0, energy_j = 0, watts_per_core = 0, energy_method = ''}
  local ttl = tonumber(r.ttl_s) or 0
  if ttl > 0 then
    redis.call('SET', key, cjson.encode(r), 'EX', ttl)
  else
    redis.call('SET', key, cjson.encode(r))
  end
  redis.call('DEL', done)
  redis.call('RPUSH', done, 'cancelled')
  if ttl > 0 then redis.call('EXPIRE', done, ttl) end
  redis.call('PUBLISH', events, 'cancelled')
  return 'cancelled'
end
if st == 'running' then
  r.cancel_requested = 1
  redis.call('SET', key, cjson.encode(r), 'KEEPTTL')
end
return st
