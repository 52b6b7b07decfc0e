-- Hold a call's worst case (A.cost nano-dollars, A.tokens tokens) against every budget of
-- the namespace, in the window A.windows names for it, if it fits in all of them.
-- Replies {'held'}, {'refused', budget, window, room cost, room tokens} (a room is nil
-- where the budget caps nothing of the kind), {'stale', published names…} or
-- {'unbudgeted'}. A.needed: a refusal records the worst case as what the window needs.
--
-- Everything is checked and held in this one script, on the one slot of the namespace's
-- keys: runners on every node and every stack of the namespace pass here one at a time,
-- so the sum of what they hold and were charged never exceeds a limit — a budget can be
-- overspent only by what settled calls cost beyond their own worst case.
charge_expired(K.spend, K.holds, K.held, A.now)
if redis.call('HEXISTS', K.held, A.hold_id) == 1 then
  return {'held'} -- a retry of a hold taken already: held once, counted once
end

-- The caller names a window for each published budget, no more and no fewer: a budget it
-- does not know of would go unchecked, and one removed would be charged for nothing.
local published = redis.call('HGETALL', K.budgets)
local names, definitions = {}, {}
for i = 1, #published, 2 do
  names[#names + 1] = published[i]
  definitions[published[i]] = published[i + 1]
end
table.sort(names)
local named = 0
for name in pairs(A.windows) do
  named = named + 1
  if not definitions[name] then
    named = -1
    break
  end
end
if named ~= #names then
  local reply = {'stale'}
  for _, name in ipairs(names) do
    reply[#reply + 1] = name
  end
  return reply
end
if #names == 0 then
  return {'unbudgeted'} -- no budget to keep: nothing to hold, nothing to settle
end

-- room(limit, charged, held): what a window has left, false if the budget sets no limit
-- of the kind. Below 0 when settles beyond their worst case took the window past its limit.
local function room(limit, charged, held)
  if not limit then
    return false
  end
  return tonumber(limit) - tonumber(charged or '0') - tonumber(held or '0')
end

-- reported(left): a room as the reply says it, what is left (never below 0) or nil.
local function reported(left)
  return left and math.max(0, left)
end

local cost, tokens = tonumber(A.cost), tonumber(A.tokens)
for _, name in ipairs(names) do -- sorted: the budget refused is the same on every call
  local window = A.windows[name]
  local limits = cjson.decode(definitions[name])
  local counts = redis.call('HMGET', K.spend, spend_field(name, window, 'cost'),
    spend_field(name, window, 'held_cost'), spend_field(name, window, 'tokens'),
    spend_field(name, window, 'held_tokens'))
  local room_cost = room(limits.maxCost, counts[1], counts[2])
  local room_tokens = room(limits.maxTokens, counts[3], counts[4])
  if (room_cost and cost > room_cost) or (room_tokens and tokens > room_tokens) then
    if A.needed == 'true' then
      -- The smallest call the caller could make did not fit: the window is starved, and
      -- stays so while less than this is left (the operator reads it to stop the
      -- namespace's stacks rather than have every tick start only to be refused).
      for kind, amount in pairs({needed_cost = cost, needed_tokens = tokens}) do
        local field = spend_field(name, window, kind)
        if amount > tonumber(redis.call('HGET', K.spend, field) or '0') then
          redis.call('HSET', K.spend, field, amount)
        end
      end
    end
    return {'refused', name, window, reported(room_cost), reported(room_tokens)}
  end
end

redis.call('ZADD', K.holds, A.expires, A.hold_id)
redis.call('HSET', K.held, A.hold_id,
  cjson.encode({cost = A.cost, tokens = A.tokens, windows = A.windows}))
for _, name in ipairs(names) do
  redis.call('HINCRBY', K.spend, spend_field(name, A.windows[name], 'held_cost'), A.cost)
  redis.call('HINCRBY', K.spend, spend_field(name, A.windows[name], 'held_tokens'), A.tokens)
end
return {'held'}
