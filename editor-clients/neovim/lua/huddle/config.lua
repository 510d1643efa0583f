-- The plugin's settings: defaults, merging with the user's, and validation that names the field.

local M = {}

M.defaults = {
  -- Where to connect (sent to `huddle lsp` as initializationOptions). No hub: solo mode.
  hub = nil, -- "ws://127.0.0.1:8765", or a cluster's nodes: { "ws://node1:8765", "ws://node2:8765" }
  room = nil, -- "acme/webapp"; default: the workspace folder's name
  token = nil,
  user = nil, -- default: the token's user, else your login name
  color = nil, -- "#e6194b"; default: picked from your name
  completion_scope = nil, -- "auto" | "line" | "block"

  -- The language server command; default: .venv/bin/huddle of the workspace or of the Huddle
  -- checkout this plugin lives in, else `huddle` on PATH. The "lsp" argument is added.
  cmd = nil,
  autostart = true, -- attach to every file buffer you open
  filetypes = nil, -- only these filetypes (a list); nil: all
  root_markers = { "huddle.toml", ".huddleignore", ".git" },
  -- Neovim waits this long before sending typing to the server (its default, 150 ms, is
  -- a long time for a teammate watching).
  debounce_text_changes = 20,
  cursor_throttle_ms = 50,

  presence = true, -- show teammates' cursors and selections
  ghost_text = {
    enabled = true,
    accept_key = "<Tab>", -- false: map require("huddle").accept() yourself
    debounce_ms = 75, -- Neovim < 0.12: wait this long after a keystroke before asking
  },
  summary = {
    split = "botright split", -- how the summary window opens
    height = 15,
  },
  share = {
    register = "+", -- the unnamed register when there is no clipboard
    role = "edit",
    ttl_seconds = 7 * 24 * 3600,
  },
}

local function is_list_of_strings(value)
  if type(value) ~= "table" then
    return false
  end
  for _, item in ipairs(value) do
    if type(item) ~= "string" then
      return false
    end
  end
  return #value == vim.tbl_count(value)
end

local function is_hub_address(value)
  return type(value) == "string" and value:match("^wss?://[^%s,]+$") ~= nil
end

-- One address, or several (a cluster's nodes, which `huddle lsp` tries in turn).
local function is_hub(value)
  if not is_list_of_strings(value) then
    return is_hub_address(value)
  end
  for _, address in ipairs(value) do
    if not is_hub_address(address) then
      return false
    end
  end
  return #value > 0
end

local CHECKS = {
  hub = function(v)
    return is_hub(v), "a ws:// or wss:// URL, or a list of them"
  end,
  room = function(v)
    return type(v) == "string" and #v > 0 and #v <= 200, "a room name (1-200 characters)"
  end,
  token = function(v)
    return type(v) == "string", "a string"
  end,
  user = function(v)
    return type(v) == "string" and #v > 0 and #v <= 64, "a name (1-64 characters)"
  end,
  color = function(v)
    return type(v) == "string" and v:match("^#%x%x%x%x%x%x$") ~= nil, 'a colour like "#e6194b"'
  end,
  completion_scope = function(v)
    return v == "auto" or v == "line" or v == "block", '"auto", "line" or "block"'
  end,
  cmd = function(v)
    return is_list_of_strings(v) and #v > 0, "a non-empty list of strings"
  end,
  autostart = function(v)
    return type(v) == "boolean", "true or false"
  end,
  filetypes = function(v)
    return is_list_of_strings(v), "a list of filetypes"
  end,
  root_markers = function(v)
    return is_list_of_strings(v), "a list of file names"
  end,
  debounce_text_changes = function(v)
    return type(v) == "number" and v >= 0, "milliseconds (a number >= 0)"
  end,
  cursor_throttle_ms = function(v)
    return type(v) == "number" and v >= 0, "milliseconds (a number >= 0)"
  end,
  presence = function(v)
    return type(v) == "boolean", "true or false"
  end,
  ["ghost_text.enabled"] = function(v)
    return type(v) == "boolean", "true or false"
  end,
  ["ghost_text.accept_key"] = function(v)
    return v == false or (type(v) == "string" and #v > 0), "a key like \"<Tab>\", or false"
  end,
  ["ghost_text.debounce_ms"] = function(v)
    return type(v) == "number" and v >= 0, "milliseconds (a number >= 0)"
  end,
  ["summary.split"] = function(v)
    return type(v) == "string", 'an Ex command like "botright split"'
  end,
  ["summary.height"] = function(v)
    return type(v) == "number" and v > 0, "a number of lines"
  end,
  ["share.register"] = function(v)
    return type(v) == "string" and #v == 1, 'a register name like "+"'
  end,
  ["share.role"] = function(v)
    return v == "edit" or v == "read", '"edit" or "read"'
  end,
  ["share.ttl_seconds"] = function(v)
    return type(v) == "number" and v > 0 and v <= 30 * 24 * 3600, "seconds, at most 30 days"
  end,
}

local function get(tbl, dotted)
  local value = tbl
  for key in dotted:gmatch("[^.]+") do
    if type(value) ~= "table" then
      return nil
    end
    value = value[key]
  end
  return value
end

-- Every problem with `opts` (merged settings) as "`field` must be ...", sorted by field.
function M.validate(opts)
  local errors = {}
  for field, check in pairs(CHECKS) do
    local value = get(opts, field)
    if value ~= nil then
      local ok, expected = check(value)
      if not ok then
        local got = vim.inspect(value)
        table.insert(errors, ("`%s` must be %s (got %s)"):format(field, expected, got))
      end
    end
  end
  for key in pairs(opts) do
    if M.defaults[key] == nil and CHECKS[key] == nil then
      table.insert(errors, ("`%s` is not a setting of huddle"):format(key))
    end
  end
  table.sort(errors)
  return errors
end

-- The user's options over the defaults, and the list of problems with them.
function M.resolve(opts)
  local merged = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts or {})
  return merged, M.validate(merged)
end

return M
