-- field_value(fields, name): the value of field ``name`` in a stream entry's flat field list
-- (field, value, …), or nil.
local function field_value(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then
      return fields[i + 1]
    end
  end
  return nil
end
