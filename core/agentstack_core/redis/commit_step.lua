-- Apply one agent step's writes together with the record that the step is done, fenced
-- by the stack's life and the lease; a step committed before (a resumed tick) applies
-- nothing again. Replies {-1} (the stack is gone), {0} (the lease is lost), or {1}
-- (applied) / {2} (committed before), followed — when A.next_agent names the agent
-- whose step comes next — by that agent's context as after this commit (K.memory and
-- K.inbox are that agent's).
--
-- A.writes is a JSON list of {command, key position in KEYS, {arguments}} that the
-- store made from the step's domain operations. Only the commands below may appear:
-- the script refuses the whole list, before writing anything, if another does.
-- ARCHIVE is not a Redis command but a named write this script expands itself: an item
-- appended to K.archive (its arguments: the item's fields) and indexed with it
-- (archive_append), so no posting is written but by the index's own code.
--
-- A step that made calls also adds its bill (A.record's cost, tokens, calls, unpriced)
-- to K.usage_days under A.day and its model.
local WRITES = {HSET = true, HSETNX = true, HDEL = true, SET = true, XADD = true, ARCHIVE = true}

if not alive(K.spec, A.uid) then
  return {-1}
end
if redis.call('GET', K.lease) ~= A.token then
  return {0}
end
local status = 2
if redis.call('HEXISTS', K.steps, A.agent) == 0 then
  local writes = cjson.decode(A.writes)
  for _, write in ipairs(writes) do
    if not WRITES[write[1]] then
      return redis.error_reply('commit_step: command not allowed: ' .. tostring(write[1]))
    end
    if write[1] == 'ARCHIVE' and KEYS[write[2]] ~= K.archive then
      return redis.error_reply('commit_step: ARCHIVE writes to the archive only')
    end
  end
  for _, write in ipairs(writes) do
    local key = KEYS[write[2]]
    if write[1] == 'ARCHIVE' then
      archive_append(K, write[3], A.index_terms, A.archive_hard_maxlen, A.archive_trim_batch)
    else
      redis.call(write[1], key, unpack(write[3]))
      redis.call('SADD', K.index, key)
    end
  end
  -- The step's bill, in its day's chargeback buckets (A.day, UTC): in this same call as
  -- its trace entry, so the buckets add up to the traces. Counts cross as decimal text
  -- (%d), never as a Lua number that Redis would print with 14 digits.
  local step = cjson.decode(A.record)
  if (tonumber(step.calls) or 0) > 0 then
    local bucket = A.day .. '|' .. step.model .. '|'
    redis.call('HINCRBY', K.usage_days, bucket .. 'cost', string.format('%d', step.cost))
    redis.call('HINCRBY', K.usage_days, bucket .. 'tokens', string.format('%d', step.tokens))
    redis.call('HINCRBY', K.usage_days, bucket .. 'calls', string.format('%d', step.calls))
    redis.call('HINCRBY', K.usage_days, bucket .. 'unpriced', string.format('%d', step.unpriced))
    redis.call('SADD', K.index, K.usage_days)
  end
  redis.call('HSET', K.steps, A.agent, A.record)
  redis.call('PEXPIRE', K.steps, A.steps_ttl_ms)
  redis.call('SADD', K.index, K.steps)
  status = 1
end
if not A.next_agent then
  return {status}
end
return {status, read_context(K, A.next_agent, A.feed_count, A.inbox_count)}
