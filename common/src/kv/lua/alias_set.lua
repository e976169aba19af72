-- Points an alias at a version, optionally only if it still points at `expect`.
-- KEYS: the model's aliases, its versions. Returns 1, -1 (no such version) or -2 (the alias
-- moved meanwhile).
local aliases, versions = KEYS[1], KEYS[2]
local alias, version, expect = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HEXISTS', versions, version .. '.size') == 0 then return -1 end
if expect ~= '-1' then
  local cur = redis.call('HGET', aliases, alias) or '0'
  if cur ~= expect then return -2 end
end
redis.call('HSET', aliases, alias, version)
return 1
