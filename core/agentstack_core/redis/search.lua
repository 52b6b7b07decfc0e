-- Search the archive (K.archive) through its index (K.archive_index, K.archive_stats):
-- the terms of A.query (tokens.lua, the indexing's own tokenizer; at most
-- A.query_terms) scored by BM25 (A.k1, A.b; idf ln(1 + (N - df + 0.5) / (df + 0.5)),
-- N the items, df a term's postings, lengths against the average), the best A.limit
-- items returned with their fields, of kind A.kind only if it is not empty.
--
-- A term's postings are read newest first, at most A.postings of them: a term found in
-- more items than that (so common that its idf is near nothing) adds to the score of
-- its newest A.postings items only. The work of one search is so bounded by the query,
-- never by the archive's size.
--
-- Replies {N, {terms}, {{id, score, fields}, …} best first, {{id, fields}, …}}: the
-- last list holds the newest A.newest items (of A.kind), the candidates semantic
-- ranking adds. Fields leave out the item's ``terms``, and its ``vector`` unless
-- A.vectors is "true". Scores cross as text (Lua would round them to integers).
local terms = tokens(A.query, tonumber(A.query_terms))
local count = redis.call('XLEN', K.archive)
local limit, kind, shown = tonumber(A.limit), A.kind, A.vectors == 'true'

local function fields_of(entry)
  local kept = {}
  local fields = entry[2]
  for i = 1, #fields, 2 do
    local name = fields[i]
    if name ~= 'terms' and (shown or name ~= 'vector') then
      kept[#kept + 1] = name
      kept[#kept + 1] = fields[i + 1]
    end
  end
  return kept
end

local function newer(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)%-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)%-(%d+)$')
  a_ms, b_ms = tonumber(a_ms), tonumber(b_ms)
  if a_ms ~= b_ms then
    return a_ms > b_ms
  end
  return tonumber(a_seq) > tonumber(b_seq)
end

-- whether hit a ranks below hit b: a lower score, or as good and older
local function below(a, b)
  if a[2] ~= b[2] then
    return a[2] < b[2]
  end
  return newer(b[1], a[1])
end

local scores, seen = {}, {}
if count > 0 and #terms > 0 then
  local k1, b = tonumber(A.k1), tonumber(A.b)
  local total = tonumber(redis.call('HGET', K.archive_stats, 'length')) or 0
  local average = math.max(total / count, 1)
  for _, term in ipairs(terms) do
    local low, high = '[' .. term .. '\0', '(' .. term .. '\1'
    local df = redis.call('ZLEXCOUNT', K.archive_index, low, high)
    if df > 0 then
      local idf = math.log(1 + (count - df + 0.5) / (df + 0.5))
      local skip = #term + 2
      local postings = redis.call('ZREVRANGEBYLEX', K.archive_index, high, low, 'LIMIT', 0,
        A.postings)
      for _, member in ipairs(postings) do
        local id, tf, length, of = string.match(member, '^([^%z]+)%z(%d+)%z(%d+)%z(.*)$', skip)
        if id and (kind == '' or of == kind) then
          tf = tonumber(tf)
          local score = idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * tonumber(length) / average))
          if scores[id] then
            scores[id] = scores[id] + score
          else
            scores[id] = score
            seen[#seen + 1] = id
          end
        end
      end
    end
  end
end

-- the best ``limit``: a min-heap of that size, so choosing costs n log(limit), not a sort
local heap = {}
local function sift_down(at)
  local size = #heap
  while true do
    local least, left, right = at, 2 * at, 2 * at + 1
    if left <= size and below(heap[left], heap[least]) then
      least = left
    end
    if right <= size and below(heap[right], heap[least]) then
      least = right
    end
    if least == at then
      return
    end
    heap[at], heap[least] = heap[least], heap[at]
    at = least
  end
end
for _, id in ipairs(seen) do
  local hit = {id, scores[id]}
  if #heap < limit then
    heap[#heap + 1] = hit
    local at = #heap
    while at > 1 and below(heap[at], heap[math.floor(at / 2)]) do
      local parent = math.floor(at / 2)
      heap[at], heap[parent] = heap[parent], heap[at]
      at = parent
    end
  elseif below(heap[1], hit) then
    heap[1] = hit
    sift_down(1)
  end
end
table.sort(heap, function(a, b) return below(b, a) end)

local hits = {}
for _, hit in ipairs(heap) do
  local entry = redis.call('XRANGE', K.archive, hit[1], hit[1])[1]
  if entry then
    hits[#hits + 1] = {hit[1], string.format('%.17g', hit[2]), fields_of(entry)}
  end
end

local newest = {}
if tonumber(A.newest) > 0 then
  for _, entry in ipairs(redis.call('XREVRANGE', K.archive, '+', '-', 'COUNT', A.newest)) do
    if kind == '' or field_value(entry[2], 'kind') == kind then
      newest[#newest + 1] = {entry[1], fields_of(entry)}
    end
  end
end
return {count, terms, hits, newest}
