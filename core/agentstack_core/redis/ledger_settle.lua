-- Settle a hold with what its call actually cost (A.cost nano-dollars, A.tokens tokens):
-- its worst case leaves the held counters, the actual amounts are charged, as one call.
-- Replies 1, or 0 when there is no such hold: settled already, or expired and charged at
-- its worst case (by this very call, if it expired before A.now) — a settle repeated
-- never charges twice.
--
-- The actual amounts are charged even beyond the worst case held (a provider that
-- counted more than its bound): the ledger records what was spent, and the next holds
-- see the window that much fuller.
charge_expired(K.spend, K.holds, K.held, A.now)
local raw = redis.call('HGET', K.held, A.hold_id)
if not raw then
  return 0
end
release(K.spend, cjson.decode(raw), A.cost, A.tokens, false)
redis.call('ZREM', K.holds, A.hold_id)
redis.call('HDEL', K.held, A.hold_id)
return 1
