-- AI completions as ghost text.
--
-- Neovim 0.12 has `vim.lsp.inline_completion`: it is enabled for huddle's buffers and does the
-- asking and the showing. Before 0.12 this module asks (`textDocument/inlineCompletion`, a
-- short debounce after each keystroke) and shows the answer as extmarks: the first line inline
-- at the cursor, the others as virtual lines. On every version, the text streamed before the
-- answer (`huddle/inlineCompletionPartial`) is shown as it grows, so ghost text appears with the
-- model's first tokens. The accept key (default <Tab>) inserts what is shown, or does what the
-- key does anyway when nothing is; it also runs the completion item's command, which tells
-- huddle lsp the completion was accepted (0.12 runs it itself).

local compat = require("huddle.compat")
local session = require("huddle.session")

local M = {}

M.ns = vim.api.nvim_create_namespace("huddle.ghost")
-- Where Neovim 0.12 draws its own inline completions.
local builtin_ns = vim.api.nvim_create_namespace("nvim.lsp.inline_completion")

local INVOKED_AUTOMATICALLY = 2 -- InlineCompletionTriggerKind.Automatic

local ghosts = {} -- bufnr -> { row, col, text, command }: what is shown
local pending = {} -- bufnr -> { client_id, id, row, col }: the request in flight
local timers = {} -- bufnr -> uv timer (debounce)
local last_error = nil

-- How often ghost text was drawn from a streamed partial and from a finished answer.
M.stats = { partial = 0, answer = 0 }

local function in_insert()
  return vim.api.nvim_get_mode().mode:sub(1, 1) == "i"
end

local function cursor()
  local pos = vim.api.nvim_win_get_cursor(0)
  return pos[1] - 1, pos[2]
end

function M.clear(bufnr)
  ghosts[bufnr] = nil
  if vim.api.nvim_buf_is_valid(bufnr) then
    vim.api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

-- Shows `text` as ghost text at (row, col) of the buffer; `command`: the completion item's,
-- run when it is accepted (nil for a partial).
function M.show(bufnr, row, col, text, command)
  vim.api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  if text == "" then
    ghosts[bufnr] = nil
    return
  end
  ghosts[bufnr] = { row = row, col = col, text = text, command = command }
  local lines = vim.split(text, "\n", { plain = true })
  local opts = { hl_mode = "combine", priority = 300 }
  if lines[1] ~= "" then
    opts.virt_text = { { lines[1], "HuddleGhost" } }
    opts.virt_text_pos = "inline"
  end
  if #lines > 1 then
    opts.virt_lines = {}
    for i = 2, #lines do
      table.insert(opts.virt_lines, { { lines[i], "HuddleGhost" } })
    end
  end
  vim.api.nvim_buf_set_extmark(bufnr, M.ns, row, col, opts)
end

-- The ghost text now shown in the buffer (ours, or Neovim 0.12's), or nil.
function M.shown(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local marks = vim.api.nvim_buf_get_extmarks(bufnr, builtin_ns, 0, -1, { details = true })
  for _, mark in ipairs(marks) do
    local details = mark[4]
    local parts = {}
    for _, chunk in ipairs(details.virt_text or {}) do
      table.insert(parts, chunk[1])
    end
    for _, line in ipairs(details.virt_lines or {}) do
      local text = {}
      for _, chunk in ipairs(line) do
        table.insert(text, chunk[1])
      end
      table.insert(parts, "\n" .. table.concat(text))
    end
    return table.concat(parts)
  end
  return ghosts[bufnr] and ghosts[bufnr].text
end

local function builtin_showing(bufnr)
  return #vim.api.nvim_buf_get_extmarks(bufnr, builtin_ns, 0, -1, { limit = 1 }) > 0
end

local function cancel(bufnr)
  local request = pending[bufnr]
  pending[bufnr] = nil
  if request and request.id then
    local client = vim.lsp.get_client_by_id(request.client_id)
    if client then
      compat.call(client, "cancel_request", request.id)
    end
  end
end

local function report(err)
  local message = type(err) == "table" and err.message or tostring(err)
  if message ~= last_error then
    last_error = message
    vim.notify(message, vim.log.levels.WARN)
  end
end

-- Shows a completion item asked for at (row, col) if the cursor is still where it was.
local function offer(bufnr, request, item, encoding)
  local text = type(item.insertText) == "string" and item.insertText
    or (type(item.insertText) == "table" and item.insertText.value)
  if not text or vim.api.nvim_get_current_buf() ~= bufnr or not in_insert() then
    return
  end
  local row, col = cursor()
  local from_row, from_col = request.row, request.col
  if item.range then
    from_row, from_col = compat.from_lsp(bufnr, item.range.start, encoding)
  end
  if from_row ~= row or not from_col or from_col > col then
    return
  end
  -- The item may cover text already typed: show only the rest.
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
  local typed = line:sub(from_col + 1, col)
  if not vim.startswith(text, typed) then
    return
  end
  last_error = nil
  M.stats.answer = M.stats.answer + 1
  M.show(bufnr, row, col, text:sub(#typed + 1), item.command)
end

function M.request(bufnr)
  if not in_insert() or vim.api.nvim_get_current_buf() ~= bufnr then
    return
  end
  local client = session.client(bufnr)
  if not client or not client.attached_buffers[bufnr] then
    return
  end
  cancel(bufnr)
  local row, col = cursor()
  local request = { client_id = client.id, row = row, col = col }
  pending[bufnr] = request
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    position = compat.to_lsp(bufnr, row, col, client.offset_encoding),
    context = { triggerKind = INVOKED_AUTOMATICALLY },
  }
  local function handler(err, result)
    if pending[bufnr] ~= request then
      return
    end
    pending[bufnr] = nil
    if err then
      report(err)
      return
    end
    local items = type(result) == "table" and (result.items or result) or {}
    if items[1] then
      offer(bufnr, request, items[1], client.offset_encoding)
    end
  end
  local method = "textDocument/inlineCompletion"
  local ok, id = compat.call(client, "request", method, params, handler, bufnr)
  request.id = ok and id or nil
end

local function schedule_request(bufnr)
  local timer = timers[bufnr]
  if timer then
    timer:stop()
  else
    timer = vim.uv.new_timer()
    timers[bufnr] = timer
  end
  timer:start(
    session.config.ghost_text.debounce_ms,
    0,
    vim.schedule_wrap(function()
      if vim.api.nvim_buf_is_valid(bufnr) then
        M.request(bufnr)
      end
    end)
  )
end

-- The cursor moved in insert mode: keep what is still ahead of it when the user typed the
-- start of the ghost text, else drop it.
local function moved(bufnr)
  local ghost = ghosts[bufnr]
  if not ghost then
    return
  end
  local row, col = cursor()
  if row == ghost.row and col == ghost.col then
    return
  end
  if row == ghost.row and col > ghost.col then
    local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
    local typed = line:sub(ghost.col + 1, col)
    if vim.startswith(ghost.text, typed) then
      M.show(bufnr, row, col, ghost.text:sub(#typed + 1), ghost.command)
      return
    end
  end
  M.clear(bufnr)
end

session.handlers["huddle/inlineCompletionPartial"] = function(_, result, ctx)
  local bufnr = vim.api.nvim_get_current_buf()
  if type(result) ~= "table" or type(result.text) ~= "string" or not in_insert() then
    return
  end
  if not result.textDocument or result.textDocument.uri ~= vim.uri_from_bufnr(bufnr) then
    return
  end
  if compat.builtin_inline_completion and builtin_showing(bufnr) then
    return -- Neovim shows a finished completion already
  end
  local client = vim.lsp.get_client_by_id(ctx.client_id)
  local row, col = compat.from_lsp(bufnr, result.position, client and client.offset_encoding)
  local cur_row, cur_col = cursor()
  if row == cur_row and col == cur_col then
    M.stats.partial = M.stats.partial + 1
    M.show(bufnr, row, col, result.text)
  end
end

-- Inserts the ghost text shown at the cursor. False when there is none.
function M.accept()
  if compat.builtin_inline_completion and vim.lsp.inline_completion.get() then
    M.clear(vim.api.nvim_get_current_buf())
    return true
  end
  local bufnr = vim.api.nvim_get_current_buf()
  local ghost = ghosts[bufnr]
  local row, col = cursor()
  if not ghost or ghost.row ~= row or ghost.col ~= col then
    return false
  end
  M.clear(bufnr)
  cancel(bufnr)
  -- Scheduled: an <expr> mapping may not change the buffer.
  vim.schedule(function()
    -- Told before the text goes in: a request first sends the changes made before it.
    local client = ghost.command and session.client(bufnr)
    if client then
      local method = "workspace/executeCommand"
      compat.call(client, "request", method, ghost.command, function() end, bufnr)
    end
    local lines = vim.split(ghost.text, "\n", { plain = true })
    vim.api.nvim_buf_set_text(bufnr, row, col, row, col, lines)
    local last = #lines == 1 and col + #lines[1] or #lines[#lines]
    vim.api.nvim_win_set_cursor(0, { row + #lines, last })
  end)
  return true
end

function M.attach(_, bufnr)
  if not session.config.ghost_text.enabled then
    return
  end
  local group = vim.api.nvim_create_augroup("huddle.ghost." .. bufnr, { clear = true })
  local function on(events, callback)
    vim.api.nvim_create_autocmd(events, { group = group, buffer = bufnr, callback = callback })
  end
  if compat.builtin_inline_completion then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
    on("CursorMovedI", function()
      moved(bufnr)
    end)
    on("LspRequest", function(args)
      local request = args.data and args.data.request or {}
      if request.method == "textDocument/inlineCompletion" and request.type == "complete" then
        vim.schedule(function()
          if builtin_showing(bufnr) then
            M.clear(bufnr)
          end
        end)
      end
    end)
  else
    on({ "InsertEnter", "InsertCharPre" }, function()
      schedule_request(bufnr)
    end)
    on("CursorMovedI", function()
      moved(bufnr)
      schedule_request(bufnr)
    end)
  end
  on({ "InsertLeave", "BufLeave" }, function()
    cancel(bufnr)
    M.clear(bufnr)
  end)
  on("BufUnload", function()
    cancel(bufnr)
    local timer = timers[bufnr]
    timers[bufnr] = nil
    if timer and not timer:is_closing() then
      timer:close()
    end
    ghosts[bufnr] = nil
    pcall(vim.api.nvim_del_augroup_by_id, group)
  end)
  local key = session.config.ghost_text.accept_key
  if key then
    vim.keymap.set("i", key, function()
      if M.accept() then
        return ""
      end
      return key
    end, { buffer = bufnr, expr = true, silent = true, desc = "Huddle: accept the AI completion" })
  end
end

function M.detach(client_id)
  for bufnr, request in pairs(pending) do
    if request.client_id == client_id then
      pending[bufnr] = nil
    end
  end
  for bufnr in pairs(ghosts) do
    M.clear(bufnr)
  end
end

table.insert(session.on_attach, M.attach)
table.insert(session.on_detach, M.detach)

return M
