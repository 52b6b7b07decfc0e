-- Replace the namespace's budgets with A.budgets (name → definition as JSON) in one step:
-- a hold sees the old set or the new one, never a mix, and a budget left out is gone.
-- Replies the number of budgets published.
redis.call('DEL', K.budgets)
local count = 0
for name, definition in pairs(A.budgets) do
  redis.call('HSET', K.budgets, name, definition)
  count = count + 1
end
return count
