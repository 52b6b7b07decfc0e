-- Give back a claim the replicas did not confirm (the call was not made): Running under
-- this tick -> Approved again, so that a later attempt claims it and makes the call.
-- Only the lease holder, only its own claim. Replies 1 if it gave it back, else 0.
if redis.call('GET', K.lease) ~= A.token then
  return 0
end
local raw = redis.call('HGET', K.approvals, A.id)
if not raw then
  return 0
end
local approval = cjson.decode(raw)
if approval.state ~= 'Running' or approval.run_tick ~= A.tick_id then
  return 0
end
approval.state = 'Approved'
approval.run_tick = ''
redis.call('HSET', K.approvals, A.id, cjson.encode(approval))
return 1
