-- Make a spec the one runners execute, never replacing a newer generation of the same
-- incarnation with an older one (a replica with a stale view must not roll a stack
-- back). Replies 1 (published) or 0 (a newer generation stands).
local current = redis.call('HMGET', K.spec, 'uid', 'generation')
if current[1] == A.published.uid and current[2]
    and tonumber(current[2]) > tonumber(A.published.generation) then
  return 0
end
redis.call('HSET', K.spec, 'generation', A.published.generation, 'spec', A.published.spec,
  'state', A.published.state, 'uid', A.published.uid)
redis.call('SADD', K.index, K.spec)
return 1
