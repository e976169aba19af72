#!lua flags=allow-cross-slot-keys
-- State transitions of one job or of a batch of jobs, each job's atomically (the whole call
-- is). A job's record is one JSON object stored as a string (schemas/redis-keys.md). A
-- worker's inference batch is one call per Redis node.
-- KEYS, per job: the record (its done-list and events channel are the record's key and
-- ':done', ':events': the same hash tag). ARGV, per job: its form, then its arguments - 'h'
-- (the hot path, at the end: from_mask, ttl_s, notify, whole) or 'g' (any transition,
-- transition() below: 19). On a Redis Cluster a batch's jobs are in different slots of one
-- node: Redis refuses declared keys of several slots (CROSSSLOT) whatever the flags, so a batch
-- there declares none and each job's key follows its form; a key this node does not serve
-- fails that job alone ("non local key"), and the caller routes it again. Calling a script
-- costs Redis per argument (each becomes a Lua string first): the hot path's few arguments
-- are most of its saving (README, "Redis per job, and its floor").
-- Returns one reply per job, in order (see the end of transition(), and of this file).
local function transition(key, done, events, from_mask, to, now, worker, result, error_code,
                          error_message, ttl_s, has_result, create, id, jtype, model,
                          created_ms, deadline_ms, notify, digest, started_ms, cost)
  -- from_mask: bit i set when the record may move from state i (1 queued, 2 running,
  --   3 succeeded, 4 failed, 5 expired, 6 cancelled) to `to`; now: the time (ms);
  -- result: base64 of the result's msgpack bytes; has_result '1': write result;
  -- create '1': make the record (id .. digest) when there is none (a job produced straight
  --   to Kafka), else check the message is the record's job;
  -- ttl_s: the record's time to live once final (0: the one stored in it); notify '1': push
  --   the final state on the done-list; started_ms: when the job was taken ('0': now, on
  --   running); cost: a final state's cost (JSON text, '' for none; decoded, from hot()).
  local ttl = tonumber(ttl_s)
  if cost == '' then cost = nil elseif type(cost) == 'string' then cost = cjson.decode(cost) end
  local raw = redis.call('GET', key)
  local r, new
  if not raw then
    if create ~= '1' then return {-1, ''} end
    r = {id = id, type = jtype, model = model, created_ms = tonumber(created_ms),
         deadline_ms = tonumber(deadline_ms), ttl_s = ttl, state = 'queued', attempts = 0}
    if digest ~= '' then r.digest = digest end
    new = true
  else
    r = cjson.decode(raw)
    -- a message acting on a record must be the job the record was made for: its type, model
    -- and (when both are known) the SHA-256 of its bytes
    if create == '1' and (r.type ~= jtype or r.model ~= model or
        (r.digest and r.digest ~= '' and digest ~= '' and r.digest ~= digest)) then
      return {-2, r.state}
    end
  end
  local st = r.state
  local i
  if st == 'queued' then i = 1 elseif st == 'running' then i = 2
  elseif st == 'succeeded' then i = 3 elseif st == 'failed' then i = 4
  elseif st == 'expired' then i = 5 elseif st == 'cancelled' then i = 6
  else i = 0 end
  if math.floor(tonumber(from_mask) / (2 ^ i)) % 2 ~= 1 then return {0, st} end
  local final = to == 'succeeded' or to == 'failed' or to == 'expired' or to == 'cancelled'
  r.state = to
  if to == 'running' or (final and st == 'queued' and worker ~= '') then
    r.attempts = (r.attempts or 0) + 1
  end
  if to == 'queued' and st == 'failed' then r.attempts = 0 end
  if to == 'running' then
    r.worker, r.started_ms, r.heartbeat_ms = worker, tonumber(now), tonumber(now)
  end
  if final then
    if worker ~= '' then r.worker = worker end
    if started_ms ~= '0' and st == 'queued' then r.started_ms = tonumber(started_ms) end
    r.finished_ms = tonumber(now)
    if has_result == '1' then r.result = result end
    if error_code ~= '' then r.error_code, r.error_message = error_code, error_message end
    if cost then r.cost = cost end
  end
  if to == 'queued' and not new then
    r.worker, r.error_code, r.error_message, r.finished_ms = nil, nil, nil, nil
    r.result, r.progress, r.cancel_requested, r.cost = nil, nil, nil, nil
    redis.call('SET', key, cjson.encode(r)) -- without a TTL: queued again
    redis.call('DEL', done)
  elseif final then
    if ttl <= 0 then ttl = tonumber(r.ttl_s) or 0 end
    if ttl > 0 then
      redis.call('SET', key, cjson.encode(r), 'EX', ttl)
    else
      redis.call('SET', key, cjson.encode(r))
    end
    if notify == '1' then
      redis.call('RPUSH', done, to)
      if ttl > 0 then redis.call('EXPIRE', done, ttl) end
    end
    redis.call('PUBLISH', events, to)
  else
    redis.call('SET', key, cjson.encode(r), 'KEEPTTL')
  end
  -- 1 when moved; the attempts counted now (>= 1) when moved to running; {0, state} when the
  -- record's state did not allow it; {-1, ''} when there is none; {-2, state} when the
  -- message is not the record's job
  if to == 'running' then return r.attempts end
  return 1
end

-- The hot path: a worker's result for a job nobody recorded yet (produced straight to Kafka;
-- created and succeeded at once, ttl_s > 0), its record made whole by the worker (whole: the
-- record's JSON, its result and cost in it): stored only if absent, with its TTL, and its
-- event published (in the loop below, inline: the per-job cost of this path is what the
-- script's time is). A record that exists already takes transition() with what whole says.
local function exists(key, done, events, from_mask, ttl_s, notify, whole)
  local w = cjson.decode(whole)
  return transition(key, done, events, from_mask, 'succeeded', w.finished_ms, w.worker,
                    w.result, '', '', ttl_s, '1', '1', w.id, w.type, w.model, w.created_ms,
                    w.deadline_ms, notify, w.digest or '', w.started_ms, w.cost)
end

-- A job whose keys Redis refuses (WRONGTYPE...) gets that error as its reply; the others go on.
local out = {}
local declared = #KEYS > 0
local a, j, n = 0, 0, #ARGV
while a < n do
  local form = ARGV[a + 1]
  local key
  if declared then
    key, a = KEYS[j + 1], a + 1
  else
    key, a = ARGV[a + 2], a + 2
  end
  local ok, r
  if form == 'h' then
    local ttl_s, notify = ARGV[a + 2], ARGV[a + 3]
    local set = redis.pcall('SET', key, ARGV[a + 4], 'NX', 'EX', ttl_s)
    if set and set.ok then
      if notify == '1' then
        redis.call('RPUSH', key .. ':done', 'succeeded')
        redis.call('EXPIRE', key .. ':done', ttl_s)
      end
      redis.call('PUBLISH', key .. ':events', 'succeeded')
      ok, r = true, 1
    elseif set and set.err then
      ok, r = true, set
    else
      ok, r = pcall(exists, key, key .. ':done', key .. ':events', unpack(ARGV, a + 1, a + 4))
    end
    a = a + 4
  else
    ok, r = pcall(transition, key, key .. ':done', key .. ':events', unpack(ARGV, a + 1, a + 19))
    a = a + 19
  end
  if not ok and type(r) ~= 'table' then r = {err = 'ERR ' .. tostring(r)} end
  j = j + 1
  out[j] = r
end
return out
