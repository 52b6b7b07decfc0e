-- The ledger's holds, shared by its scripts (see ledger.py). A hold is a call in flight:
-- its worst case sits in the held_cost/held_tokens counters of every window it names
-- until the call is settled, or the hold expires and is charged at that worst case.

-- spend_field(budget, window, counter): the field of one counter of a budget's window in
-- the spend hash. Budget names and window ids never contain '|' (ledger.py refuses them),
-- so the field splits back into its three parts.
local function spend_field(budget, window, counter)
  return budget .. '|' .. window .. '|' .. counter
end

-- negated(amount): minus a non-negative decimal text, as text: HINCRBY takes integers as
-- text (a Lua number would reach it as %.14g, rounded past 14 digits), and refuses '-0'.
local function negated(amount)
  if amount == '0' then
    return amount
  end
  return '-' .. amount
end

-- release(spend, hold, cost, tokens, unsettled): end a hold in every window it names — its
-- worst case leaves the held counters, and `cost` and `tokens` (decimal text) are charged
-- as one call; `unsettled` counts it among the calls charged without their actual cost.
-- The caller removes the hold itself.
local function release(spend, hold, cost, tokens, unsettled)
  for budget, window in pairs(hold.windows) do
    redis.call('HINCRBY', spend, spend_field(budget, window, 'held_cost'), negated(hold.cost))
    redis.call('HINCRBY', spend, spend_field(budget, window, 'held_tokens'), negated(hold.tokens))
    redis.call('HINCRBY', spend, spend_field(budget, window, 'cost'), cost)
    redis.call('HINCRBY', spend, spend_field(budget, window, 'tokens'), tokens)
    redis.call('HINCRBY', spend, spend_field(budget, window, 'calls'), 1)
    if unsettled then
      redis.call('HINCRBY', spend, spend_field(budget, window, 'unsettled'), 1)
    end
  end
end

-- charge_expired(spend, holds, held, now): charge every hold that expired before `now` at
-- its worst case, and remove it. Its runner died or lost its way mid-call, and the
-- provider may have billed the call all the same: charging less than the worst case could
-- break the promise that concurrent runners never overspend, charging nothing would
-- leave its worst case held for ever. Every script that reads or moves the counters
-- calls this first, so they all see the same ledger at the same `now`.
local function charge_expired(spend, holds, held, now)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', holds, '-inf', '(' .. now)) do
    local raw = redis.call('HGET', held, id)
    if raw then -- always there: the two are written and removed together
      local hold = cjson.decode(raw)
      release(spend, hold, hold.cost, hold.tokens, true)
    end
    redis.call('ZREM', holds, id)
    redis.call('HDEL', held, id)
  end
end
