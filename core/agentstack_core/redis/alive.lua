-- alive(spec, uid): whether the stack still lives in Redis. Its spec hash exists from
-- the operator's first publish until the stack is deleted, and, when the caller knows
-- the stack's uid, belongs to that incarnation (a stack deleted and re-created under
-- the same name has a new uid). A spec published without a uid matches any.
local function alive(spec, uid)
  if redis.call('EXISTS', spec) == 0 then
    return false
  end
  if uid == '' then
    return true
  end
  local current = redis.call('HGET', spec, 'uid')
  return (not current) or current == '' or current == uid
end
