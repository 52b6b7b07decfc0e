-- Extend the lease while its holder works; 0 when the lease is no longer its own.
if redis.call('GET', K.lease) == A.token then
  return redis.call('PEXPIRE', K.lease, A.ttl_ms)
end
return 0
