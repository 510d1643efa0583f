-- Huddle for Neovim: starts `huddle lsp` for your workspace, shows teammates and AI ghost text,
-- and adds the :Huddle* commands. See editor-clients/neovim/README.md.

local config = require("huddle.config")
local link = require("huddle.link")
local session = require("huddle.session")

local M = {}

M.errors = {} -- problems with the settings given to setup()

local function notify(message, level)
  vim.notify("huddle: " .. message, level or vim.log.levels.INFO)
end

local function failed(err)
  local message = type(err) == "table" and (err.message or vim.inspect(err)) or tostring(err)
  notify(message, vim.log.levels.ERROR)
end

local function current_root()
  return session.root_dir(vim.api.nvim_get_current_buf())
end

-- -- commands ---------------------------------------------------------------------------------

function M.join(invite)
  local root = current_root()
  if invite == nil or invite == "" then
    session.restart(root, session.overrides[root]) -- rejoin with the current settings
    return true
  end
  local parsed, why = link.parse(invite)
  if not parsed then
    notify("cannot join: " .. why, vim.log.levels.ERROR)
    return false
  end
  local claims = link.claims(parsed.token)
  if claims and type(claims.sub) == "string" then
    parsed.user = claims.sub -- the hub knows you by the name the token was issued for
  end
  session.restart(root, parsed)
  notify(("joining %s on %s"):format(parsed.room, parsed.hub))
  return true
end

function M.leave()
  if session.leave(current_root()) then
    notify("left the room")
  else
    notify("not in a room", vim.log.levels.WARN)
  end
end

function M.share(user, role)
  local share = session.config.share
  local options = { role = role or share.role, ttl_seconds = share.ttl_seconds }
  if user and user ~= "" then
    options.user = user
  end
  session.execute("huddle.invite", { options }, function(err, result)
    if err then
      return failed(err)
    end
    local register = share.register
    if (register == "+" or register == "*") and vim.fn.has("clipboard") == 0 then
      register = '"'
    end
    vim.fn.setreg(register, result.url)
    vim.g.huddle_last_invite = result.url
    local who = options.user or "guest"
    local message = ("invite for %s (%s, register %s):\n%s"):format(who, result.role, register, result.url)
    -- The same invite for a browser: the hub's page (older hubs send none).
    if type(result.web_url) == "string" then
      vim.g.huddle_last_web_invite = result.web_url
      message = message .. "\nin a browser:\n" .. result.web_url
    end
    notify(message)
  end)
end

function M.follow(user)
  session.execute("huddle.follow", { user }, function(err)
    if err then
      return failed(err)
    end
    notify("following " .. user .. " (:HuddleUnfollow to stop)")
  end)
end

function M.unfollow()
  session.execute("huddle.unfollow", {}, function(err)
    if err then
      return failed(err)
    end
    notify("not following anyone")
  end)
end

function M.undo()
  session.execute("huddle.undoMine", {}, function(err, result)
    if err then
      return failed(err)
    end
    if not (result and result.undone) then
      notify("nothing of yours to undo", vim.log.levels.WARN)
    end
  end)
end

local function describe(status)
  local where = status.solo and "solo" or (status.hub or "?")
  local lines = {
    ("%s in %s (%s) as %s"):format(status.state, status.room or "?", where, status.user or "?"),
  }
  if status.reason and status.reason ~= "" then
    table.insert(lines, "reason: " .. status.reason)
  end
  local peers = status.peers or {}
  table.insert(lines, "teammates: " .. (#peers > 0 and table.concat(peers, ", ") or "none"))
  local shared = #(status.shared or {})
  table.insert(lines, ("shared files: %d, repairs: %d"):format(shared, status.repairs or 0))
  return table.concat(lines, "\n")
end

function M.status()
  session.execute("huddle.status", {}, function(err, result)
    if err then
      return failed(err)
    end
    notify(describe(result))
  end)
end

-- The selection of the current buffer as an LSP range, from the '< and '> marks when they
-- span lines first..last, else whole lines.
local function selection_range(first, last, encoding)
  local compat = require("huddle.compat")
  local bufnr = vim.api.nvim_get_current_buf()
  local s = vim.api.nvim_buf_get_mark(bufnr, "<")
  local e = vim.api.nvim_buf_get_mark(bufnr, ">")
  local s_row, s_col, e_row, e_col = first - 1, 0, last, 0
  if s[1] == first and e[1] == last and vim.fn.visualmode() == "v" then
    local line = vim.api.nvim_buf_get_lines(bufnr, e[1] - 1, e[1], false)[1] or ""
    s_row, s_col = s[1] - 1, s[2]
    e_row, e_col = e[1] - 1, math.min(e[2] + #vim.fn.strcharpart(line:sub(e[2] + 1), 0, 1), #line)
  end
  return {
    start = compat.to_lsp(bufnr, s_row, s_col, encoding),
    ["end"] = compat.to_lsp(bufnr, e_row, e_col, encoding),
  }
end

function M.summarize(first, last)
  local summary = require("huddle.summary")
  local bufnr = vim.api.nvim_get_current_buf()
  local uri = vim.uri_from_bufnr(bufnr)
  if first == nil then
    summary.run("Summary of " .. vim.fn.expand("%:~:."), "huddle.summarizeFile", { uri })
    return
  end
  local client = session.client(bufnr)
  local range = selection_range(first, last, client and client.offset_encoding or "utf-16")
  summary.run(
    ("Summary of %s, lines %d-%d"):format(vim.fn.expand("%:~:."), first, last),
    "huddle.summarizeSelection",
    { { uri = uri, range = range } }
  )
end

-- A time argument: seconds since the epoch stay numbers, anything else goes as ISO 8601.
local function time_arg(value)
  return tonumber(value) or value
end

function M.catch_up(since)
  local arguments = {}
  if since and since ~= "" then
    arguments = { { since = time_arg(since) } }
  end
  require("huddle.summary").run("Catching up", "huddle.catchUp", arguments)
end

function M.session_summary(since, till)
  require("huddle.summary").run(
    ("Session %s to %s"):format(since, till),
    "huddle.summarizeSession",
    { { since = time_arg(since), ["until"] = time_arg(till) } }
  )
end

-- -- statusline -------------------------------------------------------------------------------

local ICONS = {
  connected = "●",
  ["read-only"] = "●",
  reconnecting = "◌",
  offline = "○",
  rejected = "✕",
}

-- For your statusline: "Huddle ● acme/webapp +2" (state, room, teammates), "" when the
-- current buffer has no huddle client.
function M.statusline()
  if not session.config then
    return "" -- before setup()
  end
  local client = session.client(vim.api.nvim_get_current_buf())
  local status = client and session.status[client.id]
  if not status then
    return client and "Huddle …" or ""
  end
  local room = status.solo and "solo" or (status.room or "")
  local text = ("Huddle %s %s"):format(ICONS[status.state] or "?", room)
  if status.state ~= "connected" then
    text = text .. " (" .. status.state .. ")"
  end
  -- huddle/peers is newer than the status's list, which is only sent when the state changes.
  local presence = require("huddle.presence")
  local peers = presence.peers[client.id] and #presence.names(0) or #(status.peers or {})
  if peers > 0 then
    text = text .. " +" .. peers
  end
  return (text:gsub("%%", "%%%%"))
end

function M.accept()
  return require("huddle.ghost").accept()
end

-- -- setup ------------------------------------------------------------------------------------

local function peer_names()
  return require("huddle.presence").names(vim.api.nvim_get_current_buf())
end

local function commands()
  local function command(name, fn, opts)
    vim.api.nvim_create_user_command(name, fn, opts or {})
  end
  command("HuddleJoin", function(args)
    M.join(args.args)
  end, { nargs = "?", desc = "Join a room from an invite link (no link: reconnect)" })
  command("HuddleLeave", M.leave, { desc = "Leave the room" })
  command("HuddleShare", function(args)
    M.share(args.fargs[1], args.fargs[2])
  end, {
    nargs = "*",
    desc = "Invite link into a register: [user] [edit|read]",
    complete = function(_, line)
      return #vim.split(line, "%s+") == 3 and { "edit", "read" } or {}
    end,
  })
  command("HuddleFollow", function(args)
    M.follow(args.args)
  end, { nargs = 1, complete = peer_names, desc = "Follow a teammate" })
  command("HuddleUnfollow", M.unfollow, { desc = "Stop following" })
  command("HuddleSummarize", function(args)
    if args.range > 0 then
      M.summarize(args.line1, args.line2)
    else
      M.summarize()
    end
  end, { range = true, desc = "Summarise the file, or the selected lines" })
  command("HuddleCatchUp", function(args)
    M.catch_up(args.args)
  end, { nargs = "?", desc = "What teammates changed since you last looked [since]" })
  command("HuddleSession", function(args)
    if #args.fargs ~= 2 then
      local usage = "usage: :HuddleSession {since} {until} (epoch seconds or ISO 8601)"
      return notify(usage, vim.log.levels.ERROR)
    end
    M.session_summary(args.fargs[1], args.fargs[2])
  end, { nargs = "+", desc = "The session as a pull-request description" })
  command("HuddleUndo", M.undo, { desc = "Undo your own last change" })
  command("HuddleStatus", M.status, { desc = "Connection, room and teammates" })
end

function M.setup(opts)
  if vim.fn.has("nvim-0.10") == 0 then
    notify("Neovim 0.10 or newer is needed", vim.log.levels.ERROR)
    return
  end
  local merged, errors = config.resolve(opts)
  session.config = merged
  M.errors = errors
  M.did_setup = true
  -- The feature modules register their handlers with the session.
  require("huddle.presence")
  require("huddle.exact")
  require("huddle.ghost")
  require("huddle.summary")
  vim.api.nvim_set_hl(0, "HuddleGhost", { link = "Comment", default = true })
  commands()
  local group = vim.api.nvim_create_augroup("huddle", { clear = true })
  vim.api.nvim_create_autocmd("ColorScheme", {
    group = group,
    callback = function()
      require("huddle.presence").reset_highlights()
    end,
  })
  if #errors > 0 then
    local list = table.concat(errors, "\n")
    notify("invalid settings (see :checkhealth huddle):\n" .. list, vim.log.levels.ERROR)
    return
  end
  if merged.autostart then
    vim.api.nvim_create_autocmd({ "BufReadPost", "BufNewFile" }, {
      group = group,
      callback = function(args)
        session.start(args.buf)
      end,
    })
    for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_is_loaded(bufnr) then
        session.start(bufnr)
      end
    end
  end
end

return M
