-- restore_state(keys, state, agents, first): make a checkpoint's state (decoded) the
-- stack's: plan, artifacts, goal, cursors, the newest feed posts, the long-term
-- memory's text (its watermark and count of consolidations are left as they are: they
-- only move forward), and for each agent of ``state`` its memory and unread inbox —
-- whose keys are KEYS[first + 1], KEYS[first + 2], then the next agent's, in the order
-- of ``agents`` (which must be the checkpoint's). Inputs in an inbox past the
-- checkpoint's newest entry (with an ``input`` number) stay, with their ids, after the
-- restored messages. Returns how many such inputs stayed.
local function restore_state(keys, state, agents, first)
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
    redis.call('DEL', keys.plan)
  else
    redis.call('SET', keys.plan, state.plan)
  end
  if state.goal == '' then
    redis.call('DEL', keys.goal)
  else
    redis.call('SET', keys.goal, state.goal)
  end
  hash(keys.artifacts, state.artifacts)
  hash(keys.cursors, state.cursors)
  local memory = field_value(state.longterm, 'memory')
  if memory then
    redis.call('HSET', keys.longterm, 'memory', memory)
  else
    redis.call('HDEL', keys.longterm, 'memory')
  end
  redis.call('DEL', keys.feed)
  local feed = {}
  for i = #state.feed, 1, -1 do  -- kept newest first
    feed[#feed + 1] = state.feed[i]
  end
  stream(keys.feed, feed)
  local kept = 0
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
    redis.call('SADD', keys.index, memory_key, inbox)
  end
  redis.call('SADD', keys.index, keys.plan, keys.artifacts, keys.cursors, keys.feed, keys.longterm)
  return kept
end

-- unquiet(keys, uid): why the state of stack ``uid`` may not be replaced now — {'gone'}
-- (no such stack), {'running'} (its published state is not Paused), {'busy', token} (a
-- tick holds the lease) — or nil: paused, and nothing runs.
local function unquiet(keys, uid)
  if not alive(keys.spec, uid) then
    return {'gone'}
  end
  if redis.call('HGET', keys.spec, 'state') ~= 'Paused' then
    return {'running'}
  end
  local lease = redis.call('GET', keys.lease)
  if lease then
    return {'busy', lease}
  end
  return nil
end

-- archive_note(keys, note, limit, hard, batch): append ``note`` (a record's fields) to
-- the archive, indexed (archive_append's bounds).
local function archive_note(keys, note, limit, hard, batch)
  local fields = {}
  for field, value in pairs(note) do
    fields[#fields + 1] = field
    fields[#fields + 1] = value
  end
  archive_append(keys, fields, limit, hard, batch)
end
