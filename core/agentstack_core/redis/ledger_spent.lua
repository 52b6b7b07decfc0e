-- The counters of each budget's window in A.windows, once the holds expired before A.now
-- are charged (so what is read is what the next hold would be checked against). Replies
-- {budget, cost, tokens, calls, held_cost, held_tokens, unsettled, needed_cost,
-- needed_tokens, …} (a counter never
-- written is nil).
charge_expired(K.spend, K.holds, K.held, A.now)
local reply = {}
for budget, window in pairs(A.windows) do
  local counts = redis.call('HMGET', K.spend, spend_field(budget, window, 'cost'),
    spend_field(budget, window, 'tokens'), spend_field(budget, window, 'calls'),
    spend_field(budget, window, 'held_cost'), spend_field(budget, window, 'held_tokens'),
    spend_field(budget, window, 'unsettled'), spend_field(budget, window, 'needed_cost'),
    spend_field(budget, window, 'needed_tokens'))
  reply[#reply + 1] = budget
  for i = 1, 8 do
    reply[#reply + 1] = counts[i]
  end
end
return reply
