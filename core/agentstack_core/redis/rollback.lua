-- Roll a paused stack back to one of its checkpoints, all or nothing. Replies {'gone'}
-- (no such stack), {'running'} (its published state is not Paused), {'busy', token} (a
-- tick holds the lease), {'missing'} (no such checkpoint), else {'done', seq, inputs
-- kept}.
--
-- Restored as the checkpoint holds them: plan, artifacts, goal, cursors, the newest
-- feed posts, and for each agent of the checkpoint its memory and unread inbox; of the
-- long-term memory only its text (the watermark and the count of consolidations move
-- forward only: what came after stays in the archive, covered). Inputs people sent
-- after the checkpoint (inbox entries past the checkpoint's newest, with an ``input``
-- number) are kept, with their ids, after the restored messages — unread in the
-- restored timeline, even if the abandoned one had read them: nothing sent is lost.
-- Counters (tokens, dollars) are never rolled back, the checkpoints after this one stay
-- (a rollback is undone by rolling forward to one of them), and a note saying who
-- rolled back from where is archived. The team's memory and inbox keys follow the
-- declared keys, two per agent of A.agents (which the caller read from the checkpoint).
if not alive(K.spec, A.uid) then
  return {'gone'}
end
if redis.call('HGET', K.spec, 'state') ~= 'Paused' then
  return {'running'}
end
local lease = redis.call('GET', K.lease)
if lease then
  return {'busy', lease}
end
local seq = redis.call('ZSCORE', K.checkpoints, A.tick_id)
local raw = redis.call('HGET', K.checkpoint_states, A.tick_id)
if not seq or not raw then
  return {'missing'}
end
local state = cjson.decode(raw)
local function hash(key, flat)
  redis.call('DEL', key)
  if #flat > 0 then
    redis.call('HSET', key, unpack(flat))
  end
end
local function stream(key, entries)
  for _, entry in ipairs(entries) do
    redis.call('XADD', key, entry[1], unpack(entry[2]))
  end
end
if state.plan == '' then
  redis.call('DEL', K.plan)
else
  redis.call('SET', K.plan, state.plan)
end
if state.goal == '' then
  redis.call('DEL', K.goal)
else
  redis.call('SET', K.goal, state.goal)
end
hash(K.artifacts, state.artifacts)
hash(K.cursors, state.cursors)
local memory = field_value(state.longterm, 'memory')
if memory then
  redis.call('HSET', K.longterm, 'memory', memory)
else
  redis.call('HDEL', K.longterm, 'memory')
end
redis.call('DEL', K.feed)
local feed = {}
for i = #state.feed, 1, -1 do  -- kept newest first
  feed[#feed + 1] = state.feed[i]
end
stream(K.feed, feed)
local agents, kept = cjson.decode(A.agents), 0
local first = #KEYS - 2 * #agents
for i, member in ipairs(state.agents) do
  assert(member[1] == agents[i], 'the agents do not match the checkpoint')
  local memory_key, inbox = KEYS[first + 2 * i - 1], KEYS[first + 2 * i]
  local later = {}
  local after = '-'
  if member[4] ~= '' then
    after = '(' .. member[4]
  end
  for _, entry in ipairs(redis.call('XRANGE', inbox, after, '+')) do
    local number = field_value(entry[2], 'input')
    if number and number ~= '0' then
      later[#later + 1] = entry
    end
  end
  hash(memory_key, member[2])
  redis.call('DEL', inbox)
  stream(inbox, member[3])
  stream(inbox, later)
  kept = kept + #later
  redis.call('SADD', K.index, memory_key, inbox)
end
local note = {}
for field, value in pairs(A.note) do
  note[#note + 1] = field
  note[#note + 1] = value
end
archive_append(K, note, A.index_terms, A.archive_hard_maxlen, A.archive_trim_batch)
redis.call('SADD', K.index, K.plan, K.artifacts, K.cursors, K.feed, K.longterm)
return {'done', tonumber(seq), kept}
