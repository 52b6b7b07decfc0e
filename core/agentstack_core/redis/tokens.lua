-- tokens(text, limit): the archive index's one tokenizer. Indexing (archive_append)
-- and searching (search.lua) both call it, so an item and a query can never be cut
-- into words two different ways.
--
-- A word is a run of ASCII letters and digits (%w in Redis's C locale) or of bytes
-- 128-255: a UTF-8 sequence stays whole, so a non-ASCII word is found as written,
-- though only ASCII letters are lower-cased ("Müller" and "müller" match, "MÜLLER"
-- does not). A word counts if it is 2 to 30 bytes long and not a stopword. Returns the
-- distinct terms in the order first seen (at most ``limit``), term → count, and the
-- text's length in counted words (every one, past the limit too: BM25's length).
local STOPWORDS = {}
for stopword in string.gmatch('an and are as at be but by for from had has have he her '
    .. 'his if in into is it its not of on or our she so than that the their them then '
    .. 'there these they this to was we were what when which who will with you your',
    '%S+') do
  STOPWORDS[stopword] = true
end

local function tokens(text, limit)
  local terms, counts, length = {}, {}, 0
  for word in string.gmatch(string.lower(text), '[%w\128-\255]+') do
    local size = #word
    if size >= 2 and size <= 30 and not STOPWORDS[word] then
      length = length + 1
      local seen = counts[word]
      if seen then
        counts[word] = seen + 1
      elseif #terms < limit then
        terms[#terms + 1] = word
        counts[word] = 1
      end
    end
  end
  return terms, counts, length
end
