-- Remove the spend counters of every budget's window not in A.keep (budget name → JSON
-- list of the window ids to keep), but never those of a window a hold outstanding names:
-- its settle or expiry would write them again, with its worst case subtracted from a
-- held count that no longer has it. Replies the number of fields removed.
local keep = {}
local function kept(budget, window)
  keep[budget] = keep[budget] or {}
  keep[budget][window] = true
end
for budget, windows in pairs(A.keep) do
  for _, window in ipairs(cjson.decode(windows)) do
    kept(budget, window)
  end
end
for _, raw in ipairs(redis.call('HVALS', K.held)) do
  local hold = cjson.decode(raw)
  for budget, window in pairs(hold.windows) do
    kept(budget, window)
  end
end
local removed = 0
for _, field in ipairs(redis.call('HKEYS', K.spend)) do
  -- budget|window|counter (spend_field in ledger_holds.lua)
  local budget, window = string.match(field, '^([^|]*)|([^|]*)|')
  if not (keep[budget] and keep[budget][window]) then
    removed = removed + redis.call('HDEL', K.spend, field)
  end
end
return removed
