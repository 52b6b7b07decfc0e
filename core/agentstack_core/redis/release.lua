-- Give the lease up, if it is still the caller's.
if redis.call('GET', K.lease) == A.token then
  return redis.call('DEL', K.lease)
end
return 0
