-- Seed a new fork with its source's checkpoint (A.state, read from the source's keys:
-- another slot in a cluster, so the caller carries it), all or nothing. Replies
-- {'gone'} (no such stack: not yet published, or another incarnation), {'running'}
-- (not Paused), {'busy', token} (a tick holds the lease), {'used'} (it has ticked or
-- been seeded already: its own state is never overwritten), else {'done'}.
--
-- The fork's archive gets a note of where it came from (A.note): the source's archive
-- stays the source's; the long-term memory carries what it consolidated. Inputs the
-- fork was sent before (a mirror's) stay in its inboxes. ``seeded`` in its spec hash
-- (which publishing never clears) marks it done.
if alive(K.spec, A.uid) and (redis.call('HGET', K.spec, 'seeded')
    or redis.call('EXISTS', K.done) == 1) then
  return {'used'}  -- whatever state it is in now: its own
end
local refused = unquiet(K, A.uid)
if refused then
  return refused
end
redis.call('HSET', K.spec, 'seeded', A.note.at)
local agents = cjson.decode(A.agents)
restore_state(K, cjson.decode(A.state), agents, #KEYS - 2 * #agents)
archive_note(K, A.note, A.index_terms, A.archive_hard_maxlen, A.archive_trim_batch)
return {'done'}
