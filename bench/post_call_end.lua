-- wrk script: POST an onlinePBX call_end form body with a fresh uuid on every request
-- (a repeated uuid is a duplicate, which the bridge answers without storing).
-- The body comes from the BODY environment variable; its "UUID" is replaced per request.
math.randomseed(os.time())
local counter = 0
local template = os.getenv("BODY")
prefix = "t"

function setup(thread)
  thread:set("prefix", "w" .. tostring(math.random(1, 1e9)) .. "-")
end

request = function()
  counter = counter + 1
  local body = template:gsub("UUID", prefix .. counter)
  return wrk.format("POST", nil, {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
