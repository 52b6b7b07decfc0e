-- archive_append(keys, fields, limit, hard, batch): append one item to the archive
-- (keys.archive) and index it, in the calling script's one atomic call. ``fields`` is
-- the item's record as a flat list (field, value, …); its ``text`` is cut into terms
-- by tokens.lua (at most ``limit`` distinct ones), kept with the item (field
-- ``terms``: its length, then each term and its count) and added to the index as one
-- posting per term in keys.archive_index — member "term\0id\0count\0length\0kind",
-- score 0, so one term's postings are one lexical range — and its length to the
-- total in keys.archive_stats (BM25's average length is that total over the items).
-- Then the archive is held to ``hard`` items (trim_archive). Returns the item's id.
local function archive_append(keys, fields, limit, hard, batch)
  local kind = field_value(fields, 'kind') or ''
  local terms, counts, length = tokens(field_value(fields, 'text') or '', tonumber(limit))
  local kept = {length}
  for _, term in ipairs(terms) do
    kept[#kept + 1] = term
    kept[#kept + 1] = counts[term]
  end
  fields[#fields + 1] = 'terms'
  fields[#fields + 1] = table.concat(kept, ' ')
  local id = redis.call('XADD', keys.archive, '*', unpack(fields))
  if #terms > 0 then
    local postings = {}
    for _, term in ipairs(terms) do
      postings[#postings + 1] = 0
      postings[#postings + 1] = term .. '\0' .. id .. '\0' .. counts[term] .. '\0' .. length
        .. '\0' .. kind
    end
    redis.call('ZADD', keys.archive_index, unpack(postings))
  end
  redis.call('HINCRBY', keys.archive_stats, 'length', length)
  redis.call('SADD', keys.index, keys.archive, keys.archive_index, keys.archive_stats)
  trim_archive(keys, hard, hard, batch)
  return id
end
