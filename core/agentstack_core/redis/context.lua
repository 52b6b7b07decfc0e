-- What one agent sees, in one round trip (see read_context).
return read_context(K, A.agent, A.feed_count, A.inbox_count)
