-- Invite links: `ws://127.0.0.1:8765/acme/webapp?token=eyJ...` names the hub, the room (the
-- URL's path) and the token. The token is a JWT whose `sub` is the user it was issued for.

local M = {}

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(hex)
    return string.char(tonumber(hex, 16))
  end))
end

-- { hub, room, token } from a link, or nil and why not.
function M.parse(link)
  if type(link) ~= "string" then
    return nil, "not a link"
  end
  link = vim.trim(link)
  local scheme, host, path, query = link:match("^(wss?)://([^/?#]+)([^?#]*)%??([^#]*)")
  if not scheme then
    return nil, "an invite link starts with ws:// or wss://"
  end
  local room = unescape(path:gsub("^/+", ""):gsub("/+$", ""))
  if room == "" then
    return nil, "the link names no room (ws://host:port/ROOM?token=...)"
  end
  local token
  for pair in query:gmatch("[^&]+") do
    local key, value = pair:match("^([^=]*)=(.*)$")
    if key == "token" then
      token = unescape(value)
    end
  end
  if not token or token == "" then
    return nil, "the link has no ?token="
  end
  return { hub = scheme .. "://" .. host, room = room, token = token }
end

-- The claims of a JWT (not verified: the hub does that), or nil.
function M.claims(token)
  local payload = type(token) == "string" and token:match("^[^.]+%.([^.]+)%.") or nil
  if not payload then
    return nil
  end
  payload = payload:gsub("-", "+"):gsub("_", "/")
  payload = payload .. string.rep("=", (4 - #payload % 4) % 4)
  local ok, decoded = pcall(vim.base64.decode, payload)
  if not ok then
    return nil
  end
  local parsed_ok, claims = pcall(vim.json.decode, decoded)
  return parsed_ok and type(claims) == "table" and claims or nil
end

return M
