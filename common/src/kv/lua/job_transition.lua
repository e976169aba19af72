#!lua flags=allow-cross-slot-keys
-- State transitions of one job or of a batch of jobs, each job's atomically (the whole call
-- is). A worker's inference batch is one call per Redis node: calling a script costs Redis
-- more than what this one does for a job (measured: 21.5 us of CPU per one-row inference job
-- called one by one, 16.7 in calls of 64).
-- KEYS, per job: the record, its done-list, its events channel; ARGV, per job: 19 (named in
-- transition() below). On a Redis Cluster a batch's jobs are in different slots of one node:
-- Redis refuses declared keys of several slots (CROSSSLOT) whatever the flags, so a batch
-- there declares none and each job's 3 keys lead its arguments (22 per job); a key this node
-- does not serve fails that job alone ("non local key"), and the caller routes it again.
-- Returns one reply per job, in order (see the end of transition(), and of this file).
local function transition(key, done, events, from_mask, to, now, worker, result, error_code,
                          error_message, ttl_s, has_result, create, id, type, model,
                          created_ms, deadline_ms, notify, digest, started_ms, cost)
  -- from_mask: bit i set when the record may move from state i (1 queued, 2 running,
  --   3 succeeded, 4 failed, 5 expired, 6 cancelled) to `to`; now: the time (ms);
  -- has_result '1': write result; create '1': make the record (id .. digest) when there is
  --   none (a job produced straight to Kafka), else check the message is the record's job;
  -- ttl_s: the record's time to live once final (0: the one stored in it); notify '1': push
  --   the final state on the done-list; started_ms: when the job was taken ('0': now, on
  --   running); cost: a final state's cost (JSON, '' for none).
  local st = redis.call('HGET', key, 'state')
  -- The hot path spelled out: a worker's result for a job with no record yet. The fields, in
  -- the order the general path below writes them, without building the field table or
  -- testing the mask bit by bit (a fifth of the script's cost, measured).
  if not st and create == '1' and to == 'succeeded' and has_result == '1' and worker ~= '' and
     error_code == '' and from_mask % 4 >= 2 and started_ms ~= '0' and cost ~= '' then
    redis.call('HSET', key, 'id', id, 'type', type, 'model', model, 'created_ms', created_ms,
               'deadline_ms', deadline_ms, 'ttl_s', ttl_s, 'state', 'succeeded', 'attempts', 1,
               'worker', worker, 'started_ms', started_ms, 'finished_ms', now, 'result', result,
               'digest', digest, 'cost', cost)
    local ttl = tonumber(ttl_s)
    if ttl > 0 then redis.call('EXPIRE', key, ttl) end
    if notify == '1' then
      redis.call('RPUSH', done, 'succeeded')
      if ttl > 0 then redis.call('EXPIRE', done, ttl) end
    end
    redis.call('PUBLISH', events, 'succeeded')
    return 1
  end
  local new = false
  local attempts
  local f
  if not st then
    if create ~= '1' then return {-1, ''} end
    f = {'id', id, 'type', type, 'model', model, 'created_ms', created_ms,
         'deadline_ms', deadline_ms, 'ttl_s', ttl_s, 'digest', digest}
    st, attempts, new = 'queued', 0, true
  else
    -- a message acting on a record must be the job the record was made for: its type, model
    -- and (when both are known) the SHA-256 of its bytes
    if create == '1' then
      local r = redis.call('HMGET', key, 'type', 'model', 'digest')
      if r[1] ~= type or r[2] ~= model or
         (r[3] and r[3] ~= '' and digest ~= '' and r[3] ~= digest) then
        return {-2, st}
      end
    end
    f = {}
  end
  local i
  if st == 'queued' then i = 1 elseif st == 'running' then i = 2
  elseif st == 'succeeded' then i = 3 elseif st == 'failed' then i = 4
  elseif st == 'expired' then i = 5 elseif st == 'cancelled' then i = 6
  else i = 0 end
  if math.floor(tonumber(from_mask) / (2 ^ i)) % 2 ~= 1 then return {0, st} end
  local final = to == 'succeeded' or to == 'failed' or to == 'expired' or to == 'cancelled'
  local n = #f
  f[n + 1] = 'state'; f[n + 2] = to; n = n + 2
  if to == 'running' or (final and st == 'queued' and worker ~= '') then
    if not attempts then attempts = tonumber(redis.call('HGET', key, 'attempts') or '0') end
    attempts = attempts + 1
  end
  if to == 'queued' and st == 'failed' then attempts = 0 end
  if attempts then f[n + 1] = 'attempts'; f[n + 2] = attempts; n = n + 2 end
  if to == 'running' then
    f[n + 1] = 'worker'; f[n + 2] = worker; f[n + 3] = 'started_ms'; f[n + 4] = now
    f[n + 5] = 'heartbeat_ms'; f[n + 6] = now; n = n + 6
  end
  if final then
    if worker ~= '' then f[n + 1] = 'worker'; f[n + 2] = worker; n = n + 2 end
    if started_ms ~= '0' and st == 'queued' then
      f[n + 1] = 'started_ms'; f[n + 2] = started_ms; n = n + 2
    end
    f[n + 1] = 'finished_ms'; f[n + 2] = now; n = n + 2
    if has_result == '1' then f[n + 1] = 'result'; f[n + 2] = result; n = n + 2 end
    if error_code ~= '' then
      f[n + 1] = 'error_code'; f[n + 2] = error_code; f[n + 3] = 'error_message'
      f[n + 4] = error_message; n = n + 4
    end
    if cost ~= '' then f[n + 1] = 'cost'; f[n + 2] = cost; n = n + 2 end
  end
  redis.call('HSET', key, unpack(f))
  if to == 'queued' and not new then
    redis.call('HDEL', key, 'worker', 'error_code', 'error_message', 'finished_ms',
               'result', 'progress', 'cancel_requested', 'cost')
    redis.call('PERSIST', key)
    redis.call('DEL', done)
  end
  if final then
    local ttl = tonumber(ttl_s)
    if ttl <= 0 and not new then ttl = tonumber(redis.call('HGET', key, 'ttl_s') or '0') end
    if notify == '1' then redis.call('RPUSH', done, to) end
    if ttl > 0 then
      redis.call('EXPIRE', key, ttl)
      if notify == '1' then redis.call('EXPIRE', done, ttl) end
    end
    redis.call('PUBLISH', events, to)
  end
  -- 1 when moved; the attempts counted now (>= 1) when moved to running; {0, state} when the
  -- record's state did not allow it; {-1, ''} when there is none; {-2, state} when the
  -- message is not the record's job
  if to == 'running' then return attempts end
  return 1
end

-- A job whose keys Redis refuses (WRONGTYPE...) gets that error as its reply; the others go on.
local out = {}
local declared = #KEYS > 0
local n = declared and #KEYS / 3 or #ARGV / 22
for j = 0, n - 1 do
  local key, done, events, a
  if declared then
    key, done, events, a = KEYS[3 * j + 1], KEYS[3 * j + 2], KEYS[3 * j + 3], 19 * j
  else
    a = 22 * j
    key, done, events, a = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], a + 3
  end
  local ok, r = pcall(transition, key, done, events, unpack(ARGV, a + 1, a + 19))
  if not ok and type(r) ~= 'table' then r = {err = 'ERR ' .. tostring(r)} end
  out[j + 1] = r
end
return out
