-- Record a person's decision on a pending approval, once. Replies {state after, 1 if
-- this call moved it}: Missing, the state it had if decided already, Expired if the
-- decision came after it expired, else the decision.
local raw = redis.call('HGET', K.approvals, A.id)
if not raw then
  return {'Missing', 0}
end
local approval = cjson.decode(raw)
if approval.state ~= 'Pending' then
  return {approval.state, 0}
end
if tonumber(A.now) >= tonumber(approval.expires_at) then
  approval.state = 'Expired'
else
  approval.state = A.decision
  approval.decided_by = A.by
  approval.reason = A.reason
  approval.decided_at = tonumber(A.now)
end
redis.call('HSET', K.approvals, A.id, cjson.encode(approval))
return {approval.state, 1}
