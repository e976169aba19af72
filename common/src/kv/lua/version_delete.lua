-- Deletes a version's fields unless an alias points at it. KEYS: the model's versions, its
-- aliases. Returns 1, 0 (no such version) or -1 (an alias points at it).
local versions, aliases = KEYS[1], KEYS[2]
local version = ARGV[1]
for _, v in ipairs(redis.call('HVALS', aliases)) do
  if v == version then return -1 end
end
if redis.call('HEXISTS', versions, version .. '.h5') == 0 then return 0 end
local f = {}
for _, k in ipairs({'h5', 'sha256', 'size', 'parent', 'job', 'created_ms', 'metrics', 'config'}) do
  f[#f + 1] = version .. '.' .. k
end
redis.call('HDEL', versions, unpack(f))
return 1
