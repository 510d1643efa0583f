-- The `huddle lsp` client of each workspace root: starting it with the right settings,
-- restarting it to join another room, stopping it, and what it last reported.

local compat = require("huddle.compat")
local link = require("huddle.link")

local M = {}

M.name = "huddle"
M.config = nil -- set by setup()
M.status = {} -- client id -> the last huddle/status payload
M.overrides = {} -- root -> settings from :HuddleJoin {link}
M.left = {} -- root -> true after :HuddleLeave (autostart leaves it alone)
M.handlers = {} -- method -> handler, filled in by the feature modules
M.on_attach = {} -- functions(client, bufnr) run when a buffer attaches
M.on_detach = {} -- functions(client_id) run when a client exits
-- Clients asked to stop: a client is not "stopped" until the server answers its shutdown,
-- and must not be reused or talked to in the meantime.
local stopping = {}

-- False for a client that is stopping.
function M.active(client_id)
  return not stopping[client_id]
end

local function usable(client)
  return client.name == M.name and not stopping[client.id] and not compat.call(client, "is_stopped")
end

-- This plugin's folder is editor-clients/neovim/lua/huddle in a Huddle checkout (resolved, as
-- the plugin may be a symlink into a package folder).
local here = vim.fn.resolve(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p"))
local checkout = vim.fn.fnamemodify(here, ":h:h:h:h:h")

function M.root_dir(bufnr)
  return vim.fs.root(bufnr, M.config.root_markers) or vim.fn.getcwd()
end

-- The language server command for a workspace root.
function M.command(root)
  if M.config.cmd then
    return M.config.cmd
  end
  local candidates = { checkout .. "/.venv/bin/huddle", "huddle" }
  if root then
    table.insert(candidates, 1, root .. "/.venv/bin/huddle")
  end
  for _, candidate in ipairs(candidates) do
    if vim.fn.executable(candidate) == 1 then
      return { candidate, "lsp" }
    end
  end
  return { "huddle", "lsp" }
end

local SETTINGS = { "hub", "room", "token", "user", "color", "completion_scope" }

function M.init_options(root)
  local options = {}
  for _, key in ipairs(SETTINGS) do
    options[key] = M.config[key]
  end
  for key, value in pairs(M.overrides[root] or {}) do
    options[key] = value
  end
  if options.user == nil and options.token then
    local claims = link.claims(options.token)
    options.user = claims and type(claims.sub) == "string" and claims.sub or nil
  end
  -- An empty table would go out as a JSON array.
  return next(options) and options or vim.empty_dict()
end

local function capabilities()
  local caps = vim.lsp.protocol.make_client_capabilities()
  caps.general = caps.general or {}
  -- Buffers are indexed in bytes: with UTF-8 positions nothing needs converting.
  caps.general.positionEncodings = { "utf-8", "utf-16" }
  if M.config.ghost_text.enabled then
    -- Declared on every version (we render ghost text where Neovim does not), so the server
    -- does not also offer the completion as a completion-menu item.
    caps.textDocument.inlineCompletion = caps.textDocument.inlineCompletion
      or { dynamicRegistration = false }
  end
  return caps
end

local function eligible(bufnr)
  if not vim.api.nvim_buf_is_valid(bufnr) or vim.bo[bufnr].buftype ~= "" then
    return false
  end
  if vim.api.nvim_buf_get_name(bufnr) == "" then
    return false
  end
  local filetypes = M.config.filetypes
  return filetypes == nil or vim.tbl_contains(filetypes, vim.bo[bufnr].filetype)
end

-- The running huddle client for a root (or the buffer's root), if any.
function M.client(bufnr_or_root)
  local root = type(bufnr_or_root) == "string" and bufnr_or_root
    or M.root_dir(bufnr_or_root or vim.api.nvim_get_current_buf())
  for _, client in ipairs(vim.lsp.get_clients({ name = M.name })) do
    if client.config.root_dir == root and usable(client) then
      return client
    end
  end
  return nil
end

-- Attaches the buffer to its root's client, starting one when there is none.
function M.start(bufnr, force)
  if not eligible(bufnr) then
    return nil
  end
  local root = M.root_dir(bufnr)
  if M.left[root] and not force then
    return nil
  end
  local handlers = {}
  for method, handler in pairs(M.handlers) do
    handlers[method] = handler
  end
  return vim.lsp.start({
    name = M.name,
    cmd = M.command(root),
    root_dir = root,
    init_options = M.init_options(root),
    capabilities = capabilities(),
    flags = { debounce_text_changes = M.config.debounce_text_changes },
    handlers = handlers,
    on_attach = function(client, attached)
      for _, fn in ipairs(M.on_attach) do
        fn(client, attached)
      end
    end,
    on_exit = function(code, signal, client_id)
      vim.schedule(function()
        stopping[client_id] = nil
        M.status[client_id] = nil
        for _, fn in ipairs(M.on_detach) do
          fn(client_id)
        end
        M.changed()
        if code ~= 0 and signal ~= 15 then
          vim.notify(
            ("huddle: the language server exited (code %d, signal %d)"):format(code, signal),
            vim.log.levels.WARN
          )
        end
      end)
    end,
  }, {
    bufnr = bufnr,
    reuse_client = function(client, config)
      return usable(client) and client.config.root_dir == config.root_dir
    end,
  })
end

local function buffers_of(root)
  local found = {}
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr) and eligible(bufnr) and M.root_dir(bufnr) == root then
      table.insert(found, bufnr)
    end
  end
  return found
end

function M.stop(root)
  local client = M.client(root)
  if client then
    stopping[client.id] = true
    compat.call(client, "stop")
  end
  return client
end

-- Stops the root's client and starts a new one (with `overrides` from an invite link).
function M.restart(root, overrides)
  M.overrides[root] = overrides
  M.left[root] = nil
  M.stop(root)
  for _, bufnr in ipairs(buffers_of(root)) do
    M.start(bufnr, true)
  end
end

function M.leave(root)
  M.left[root] = true
  return M.stop(root) ~= nil
end

-- Tells the statusline and anyone listening (`User HuddleStatus`) that something changed.
function M.changed()
  vim.cmd("redrawstatus!")
  vim.api.nvim_exec_autocmds("User", { pattern = "HuddleStatus", modeline = false })
end

M.handlers["huddle/status"] = function(_, result, ctx)
  if type(result) ~= "table" or not M.active(ctx.client_id) then
    return
  end
  local previous = M.status[ctx.client_id]
  M.status[ctx.client_id] = result
  if result.state == "rejected" and (previous == nil or previous.state ~= "rejected") then
    local reason = result.reason or ""
    vim.notify("huddle: the hub refused to connect: " .. reason, vim.log.levels.ERROR)
  end
  M.changed()
end

-- Runs a workspace command on the current buffer's client; `callback(err, result)`.
function M.execute(command, arguments, callback, bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local client = M.client(bufnr)
  if not client then
    callback({ message = "not connected (open a file of the workspace, or :HuddleJoin)" })
    return nil
  end
  local ok, id = compat.call(client, "request", "workspace/executeCommand", {
    command = command,
    arguments = arguments,
  }, function(err, result)
    callback(err, result)
  end, bufnr)
  if not ok then
    callback({ message = "the language server is not running" })
    return nil
  end
  return client, id
end

return M
