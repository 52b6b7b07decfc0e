-- trim_archive(keys, cap, hard, batch): bound the archive (keys.archive), its index
-- (keys.archive_index, keys.archive_stats) with it. Beyond ``cap`` items the oldest go,
-- but only those the consolidation watermark covers (field ``watermark`` of
-- keys.longterm, a stream id; absent or not an id: "0-0", nothing covered); beyond
-- ``hard`` items the oldest go whether covered or not, and are counted in field
-- ``lost`` of keys.longterm, so a loss is never silent. At most ``batch`` items go per call (the
-- work of one call stays small; a backlog drains over the next calls). Each item
-- leaves with its postings: its terms were kept with it (its ``terms`` field, "length
-- term count term count …") when it was indexed. Returns the number of items trimmed.
local function unindex(keys, id, fields)
  local terms, kind = field_value(fields, 'terms'), field_value(fields, 'kind') or ''
  if not terms then
    return  -- appended before the index existed: it has no postings
  end
  local words = {}
  for word in string.gmatch(terms, '%S+') do
    words[#words + 1] = word
  end
  local length = words[1]
  local members = {}
  for i = 2, #words - 1, 2 do
    members[#members + 1] = words[i] .. '\0' .. id .. '\0' .. words[i + 1] .. '\0' .. length
      .. '\0' .. kind
  end
  if #members > 0 then
    redis.call('ZREM', keys.archive_index, unpack(members))
  end
  redis.call('HINCRBY', keys.archive_stats, 'length', -tonumber(length))
end

local function trim_archive(keys, cap, hard, batch)
  cap, hard, batch = tonumber(cap), tonumber(hard), tonumber(batch)
  local count = redis.call('XLEN', keys.archive)
  if count <= cap then
    return 0
  end
  local watermark = redis.call('HGET', keys.longterm, 'watermark') or '0-0'
  if not (string.match(watermark, '^%d+$') or string.match(watermark, '^%d+%-%d+$')) then
    watermark = '0-0'  -- not a stream id: nothing counts as covered (and no finish fails)
  end
  local covered = redis.call('XRANGE', keys.archive, '-', watermark, 'COUNT',
    math.min(count - cap, batch))
  local lost = math.min(math.max(0, count - #covered - hard), batch - #covered)
  local gone = covered
  if lost > 0 then
    gone = redis.call('XRANGE', keys.archive, '-', '+', 'COUNT', #covered + lost)
  end
  if #gone == 0 then
    return 0
  end
  for _, entry in ipairs(gone) do
    unindex(keys, entry[1], entry[2])
  end
  local ms, seq = string.match(gone[#gone][1], '^(%d+)%-(%d+)$')
  redis.call('XTRIM', keys.archive, 'MINID', ms .. '-' .. string.format('%d', tonumber(seq) + 1))
  if lost > 0 then
    redis.call('HINCRBY', keys.longterm, 'lost', lost)
    redis.call('SADD', keys.index, keys.longterm)
  end
  return #gone
end
