-- write_checkpoint(keys, tick_id, now, agents, first, limits): keep the stack's state as
-- tick ``tick_id`` leaves it, inside the tick's own finish (a checkpoint never shows half
-- a tick). ``agents``: the team's names, whose memory and inbox keys are
-- KEYS[first], KEYS[first + 1], then the next agent's, and so on; ``limits``: recent,
-- every, max, max_bytes and feed (see agentstack_core.retention). The state holds what
-- the agents see and build on — plan, artifacts, goal, long-term memory, cursors, the
-- newest feed posts, each agent's memory, unread inbox and newest inbox id ({agent,
-- memory, unread, newest}: a rollback keeps what came after it) — and where the archive stood;
-- never counters (money spent stays spent). Past the recent window one checkpoint in
-- ``every`` stays; beyond ``max`` checkpoints or ``max_bytes`` the oldest go (never the
-- newest). Returns the checkpoint's sequence number.
local function write_checkpoint(keys, tick_id, now, agents, first, limits)
  if redis.call('ZSCORE', keys.checkpoints, tick_id) then
    return 0  -- a finish replayed (it is recorded once; so is its checkpoint)
  end
  local newest = redis.call('ZRANGE', keys.checkpoints, -1, -1, 'WITHSCORES')
  local seq = 1
  if #newest > 0 then
    seq = tonumber(newest[2]) + 1
  end
  local team = {}
  for i, agent in ipairs(agents) do
    local memory, inbox = KEYS[first + 2 * (i - 1)], KEYS[first + 2 * (i - 1) + 1]
    local cursor = redis.call('HGET', keys.cursors, agent)
    local start = '-'
    if cursor then
      start = '(' .. cursor
    end
    local last = redis.call('XREVRANGE', inbox, '+', '-', 'COUNT', 1)
    local latest = ''
    if #last > 0 then
      latest = last[1][1]
    end
    team[#team + 1] = {agent, redis.call('HGETALL', memory), redis.call('XRANGE', inbox, start, '+'),
      latest}
  end
  local archived = redis.call('XREVRANGE', keys.archive, '+', '-', 'COUNT', 1)
  local archive = ''
  if #archived > 0 then
    archive = archived[1][1]
  end
  local state = cjson.encode({
    tick = tick_id, seq = seq, at = now,
    plan = redis.call('GET', keys.plan) or '',
    artifacts = redis.call('HGETALL', keys.artifacts),
    goal = redis.call('GET', keys.goal) or '',
    longterm = redis.call('HGETALL', keys.longterm),
    cursors = redis.call('HGETALL', keys.cursors),
    feed = redis.call('XREVRANGE', keys.feed, '+', '-', 'COUNT', limits.feed),
    agents = team,
    archive = archive,
  })
  redis.call('ZADD', keys.checkpoints, seq, tick_id)
  redis.call('HSET', keys.checkpoint_states, tick_id, state)
  local total = redis.call('HINCRBY', keys.checkpoint_states, 'bytes', #state)
  redis.call('SADD', keys.index, keys.checkpoints, keys.checkpoint_states)
  local function drop(id)
    total = redis.call('HINCRBY', keys.checkpoint_states, 'bytes',
      -redis.call('HSTRLEN', keys.checkpoint_states, id))
    redis.call('HDEL', keys.checkpoint_states, id)
    redis.call('ZREM', keys.checkpoints, id)
  end
  local leaving = seq - tonumber(limits.recent)
  if leaving > 0 and leaving % tonumber(limits.every) ~= 0 then
    for _, id in ipairs(redis.call('ZRANGE', keys.checkpoints, leaving, leaving, 'BYSCORE')) do
      drop(id)
    end
  end
  while redis.call('ZCARD', keys.checkpoints) > tonumber(limits.max)
    or (total > tonumber(limits.max_bytes) and redis.call('ZCARD', keys.checkpoints) > 1) do
    drop(redis.call('ZRANGE', keys.checkpoints, 0, 0)[1])
  end
  return seq
end
