-- Accept an input: count it against the per-minute rate, number it, and append it to
-- the agent's inbox, the stack's inputs log and its archive (indexed: search finds it
-- after the capped streams moved on), all or nothing. A webhook's delivery carries its
-- id: one seen before is refused before anything else. Replies {-1} (no such stack),
-- {-2} (a delivery seen before), {0, ms until the rate window ends} (over the rate), or
-- {number, inbox message id}.
if not alive(K.spec, A.uid) then
  return {-1}
end
local now = tonumber(A.now_ms)
if A.delivery ~= '' and redis.call('ZSCORE', K.deliveries, A.delivery) then
  return {-2}
end
local window = math.floor(now / 60000)
local counted = redis.call('HMGET', K.input_counters, 'window', 'count')
local count = 0
if tonumber(counted[1]) == window then
  count = tonumber(counted[2]) or 0
end
if count >= tonumber(A.per_minute) then
  return {0, (window + 1) * 60000 - now}
end
local number = redis.call('HINCRBY', K.input_counters, 'seq', 1)
redis.call('HSET', K.input_counters, 'window', window, 'count', count + 1)
local function flat(fields)
  local flattened = {}
  for field, value in pairs(fields) do
    table.insert(flattened, field)
    table.insert(flattened, value)
  end
  return flattened
end
A.message.input = tostring(number)
local id = redis.call('XADD', K.inbox, 'MAXLEN', '~', A.inbox_maxlen, '*', unpack(flat(A.message)))
A.input.number = tostring(number)
A.input.message = id
redis.call('XADD', K.inputs, 'MAXLEN', '~', A.inputs_maxlen, '*', unpack(flat(A.input)))
A.archived.ref = '#' .. number
archive_append(K, flat(A.archived), A.index_terms, A.archive_hard_maxlen, A.archive_trim_batch)
if number > tonumber(A.inputs_maxlen) then
  redis.call('HDEL', K.input_outcomes, tostring(number - tonumber(A.inputs_maxlen)))
end
if A.delivery ~= '' then
  redis.call('ZADD', K.deliveries, now, A.delivery)
  redis.call('ZREMRANGEBYSCORE', K.deliveries, '-inf', now - tonumber(A.deliveries_kept_ms))
  redis.call('ZREMRANGEBYRANK', K.deliveries, 0, -1 - tonumber(A.deliveries_kept))
  redis.call('SADD', K.index, K.deliveries)
end
redis.call('SADD', K.index, K.input_counters, K.inbox, K.inputs)
return {number, id}
