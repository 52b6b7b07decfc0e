-- read_context(keys, agent, feed_count, inbox_count): what one agent sees — the plan,
-- the artifacts, the newest feed posts, its memory, its unread inbox (the messages
-- after its cursor), where a finite goal stands and the long-term memory. ``keys``
-- names plan, artifacts, feed, memory, cursors, inbox (the agent's own memory and
-- inbox), goal and longterm.
local function read_context(keys, agent, feed_count, inbox_count)
  local cursor = redis.call('HGET', keys.cursors, agent)
  local start = '-'
  if cursor then
    start = '(' .. cursor
  end
  return {redis.call('GET', keys.plan) or '', redis.call('HGETALL', keys.artifacts),
    redis.call('XREVRANGE', keys.feed, '+', '-', 'COUNT', feed_count),
    redis.call('HGETALL', keys.memory),
    redis.call('XRANGE', keys.inbox, start, '+', 'COUNT', inbox_count),
    redis.call('GET', keys.goal) or '', redis.call('HGETALL', keys.longterm)}
end
