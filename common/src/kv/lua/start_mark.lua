-- Raises how far the owners of an inference partition may have started its messages
-- (never lowers it), and keeps it ttl_s. KEYS: the partition's mark. ARGV: offset, ttl_s.
-- Returns the mark now.
local mark = KEYS[1]
local was = tonumber(redis.call('GET', mark) or '0')
local to = tonumber(ARGV[1])
if to > was then
  redis.call('SET', mark, ARGV[1], 'EX', ARGV[2])
  return to
end
redis.call('EXPIRE', mark, ARGV[2])
return was
