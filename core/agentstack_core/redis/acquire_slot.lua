-- Take one of a provider's fleet-wide call slots, if one is free: slots not confirmed
-- since A.stale_before are free again (their holder died). Replies 1 (taken) or 0.
redis.call('ZREMRANGEBYSCORE', K.slots, '-inf', A.stale_before)
if redis.call('ZCARD', K.slots) < tonumber(A.limit) then
  redis.call('ZADD', K.slots, A.now, A.token)
  return 1
end
return 0
