-- Start a tick in one round trip. Replies {'done', recorded result or ''} when the tick
-- id is finished already, {'gone'} when the stack no longer lives, {'held', token, steps
-- hash} when another token holds the lease (the steps an earlier attempt committed count
-- even if the tick is dropped for it), else takes the lease and replies {'leased', spec
-- hash, usage hash, steps hash, goal}: everything admission and resumption need.
local outcome = redis.call('HGET', K.outcomes, A.tick_id)
if outcome or redis.call('ZSCORE', K.done, A.tick_id) then
  return {'done', outcome or ''}
end
if not alive(K.spec, A.uid) then
  return {'gone'}
end
local current = redis.call('GET', K.lease)
if current and current ~= A.token then
  return {'held', current, redis.call('HGETALL', K.steps)}
end
redis.call('SET', K.lease, A.token, 'PX', A.ttl_ms)
redis.call('SADD', K.index, K.lease)
return {'leased', redis.call('HGETALL', K.spec), redis.call('HGETALL', K.usage),
  redis.call('HGETALL', K.steps), redis.call('GET', K.goal) or ''}
