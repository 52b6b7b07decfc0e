-- Take an approved tool call to make it now, under the stack's lease: Approved ->
-- Running, with the claiming tick. Replies {'Claimed'}, {'LeaseLost'}, {'Missing'}, or
-- {state, the tick that claimed it} when it is not Approved (Running: an interrupted
-- earlier attempt claimed it).
if redis.call('GET', K.lease) ~= A.token then
  return {'LeaseLost'}
end
local raw = redis.call('HGET', K.approvals, A.id)
if not raw then
  return {'Missing'}
end
local approval = cjson.decode(raw)
if approval.state ~= 'Approved' then
  return {approval.state, approval.run_tick or ''}
end
approval.state = 'Running'
approval.run_tick = A.tick_id
redis.call('HSET', K.approvals, A.id, cjson.encode(approval))
return {'Claimed'}
