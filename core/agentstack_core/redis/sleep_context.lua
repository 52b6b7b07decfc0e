-- What a consolidation reads, in one round trip: the long-term memory hash and the
-- archive items after its watermark (at most A.count of them, oldest first).
local watermark = redis.call('HGET', K.longterm, 'watermark') or '0-0'
return {redis.call('HGETALL', K.longterm),
  redis.call('XRANGE', K.archive, '(' .. watermark, '+', 'COUNT', A.count)}
