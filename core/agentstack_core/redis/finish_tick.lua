-- Record a tick as done with its outcome, once, whoever gets there first: the done
-- window, the recorded result (for the newest ticks), the history entry and the
-- stack's counters move together, and the archive is trimmed to its bounds
-- (trim_archive: past A.archive_maxlen only what consolidation covered, past
-- A.archive_hard_maxlen anything, counted as lost) and, for a tick that ran steps
-- (A.checkpoint), the state it leaves is kept as a checkpoint. Replies -1 (the stack is gone),
-- 0 (fenced: the finisher lost the lease, or — for a tick that did not run — the tick
-- is running right now), 1 (recorded) or 2 (recorded before).
--
-- Fence: with A.owner, the lease must be held by that token, and is released; without,
-- the lease must not be held by any token starting with A.busy_prefix (this very tick).
local r = A.result
if not alive(K.spec, A.uid) then
  return -1
end
local lease = redis.call('GET', K.lease)
if A.owner then
  if lease ~= A.owner then
    return 0
  end
  redis.call('DEL', K.lease)
elseif lease and string.sub(lease, 1, #A.busy_prefix) == A.busy_prefix then
  return 0
end
if redis.call('ZSCORE', K.done, r.tick_id) then
  return 2
end
redis.call('ZADD', K.done, A.now, r.tick_id)
redis.call('HSET', K.outcomes, r.tick_id, cjson.encode(r))
local newest = -1 - tonumber(A.outcomes_window)
local aged = redis.call('ZRANGE', K.done, newest, newest)
if #aged > 0 then
  redis.call('HDEL', K.outcomes, unpack(aged))
end
local expired = redis.call('ZRANGE', K.done, 0, -1 - tonumber(A.done_window))
if #expired > 0 then
  redis.call('ZREM', K.done, unpack(expired))
  redis.call('HDEL', K.outcomes, unpack(expired))
end
local entry = {}
for field, value in pairs(A.history) do
  table.insert(entry, field)
  table.insert(entry, value)
end
redis.call('XADD', K.history, 'MAXLEN', '~', A.history_maxlen, '*', unpack(entry))
redis.call('HINCRBY', K.usage, 'tokens', r.tokens)
redis.call('HINCRBY', K.usage, 'cost', r.cost)
redis.call('HINCRBY', K.usage, 'unpriced', r.unpriced)
if r.cost_needed ~= '0' then
  redis.call('HSET', K.usage, 'needed', r.cost_needed)
end
if r.kind == 'Sleep' then
  -- A consolidation is counted apart, and says nothing of the team's failures or idling.
  if r.outcome == 'Succeeded' then
    redis.call('HINCRBY', K.usage, 'sleeps', 1)
  end
else
  local ran = 0
  if A.ran == 'true' then
    ran = 1
  end
  redis.call('HINCRBY', K.usage, 'ticks', ran)
  if r.outcome == 'Failed' then
    redis.call('HINCRBY', K.usage, 'failures', 1)
  elseif r.outcome == 'Succeeded' then
    redis.call('HSET', K.usage, 'failures', 0)
    if r.progressed == 'true' then
      redis.call('HSET', K.usage, 'idle', 0)
    else
      redis.call('HINCRBY', K.usage, 'idle', 1)
    end
  end
end
trim_archive(K, A.archive_maxlen, A.archive_hard_maxlen, A.archive_trim_batch)
if A.checkpoint == 'true' then
  -- The team's memory and inbox keys are the last KEYS, two per agent.
  local agents = cjson.decode(A.agents)
  write_checkpoint(K, r.tick_id, A.now, agents, #KEYS - 2 * #agents + 1, A.checkpoint_limits)
end
redis.call('DEL', K.steps)
redis.call('SREM', K.index, K.steps)
redis.call('SADD', K.index, K.done, K.history, K.usage, K.outcomes)
return 1
