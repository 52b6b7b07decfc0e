-- Roll a paused stack back to one of its checkpoints, all or nothing. Replies {'gone'}
-- (no such stack), {'running'} (its published state is not Paused), {'busy', token} (a
-- tick holds the lease), {'missing'} (no such checkpoint), else {'done', seq, inputs
-- kept}.
--
-- The state is restored by restore_state: inputs people sent after the checkpoint stay
-- unread in the restored timeline, even if the abandoned one had read them — nothing
-- sent is lost. Counters (tokens, dollars) are never rolled back, the checkpoints after
-- this one stay (a rollback is undone by rolling forward to one of them), what came
-- after stays in the archive, and a note saying who rolled back to where is archived
-- (A.note). The team's memory and inbox keys follow the declared keys, two per agent
-- of A.agents (which the caller read from the checkpoint).
local refused = unquiet(K, A.uid)
if refused then
  return refused
end
local seq = redis.call('ZSCORE', K.checkpoints, A.tick_id)
local raw = redis.call('HGET', K.checkpoint_states, A.tick_id)
if not seq or not raw then
  return {'missing'}
end
local agents = cjson.decode(A.agents)
local kept = restore_state(K, cjson.decode(raw), agents, #KEYS - 2 * #agents)
archive_note(K, A.note, A.index_terms, A.archive_hard_maxlen, A.archive_trim_batch)
return {'done', tonumber(seq), kept}
