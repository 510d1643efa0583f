-- Summaries in a scratch split (buftype=nofile, filetype=markdown): the model's text fills it
-- as it streams (`huddle/summaryPartial`), then the final markdown replaces it. Closing the
-- window while the summary is still running cancels it.

local compat = require("huddle.compat")
local session = require("huddle.session")

local M = {}

M.buf_name = "huddle://summary"
local current = nil -- { bufnr, title, client_id, id, token, progress }

local function buffer()
  local bufnr = vim.fn.bufnr(M.buf_name)
  if bufnr ~= -1 and vim.api.nvim_buf_is_loaded(bufnr) then
    return bufnr
  end
  bufnr = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_name(bufnr, M.buf_name)
  vim.bo[bufnr].buftype = "nofile"
  vim.bo[bufnr].bufhidden = "hide"
  vim.bo[bufnr].swapfile = false
  vim.bo[bufnr].filetype = "markdown"
  vim.api.nvim_create_autocmd("BufWinLeave", {
    buffer = bufnr,
    callback = function()
      if current and current.bufnr == bufnr and current.id then
        local client = vim.lsp.get_client_by_id(current.client_id)
        if client then
          compat.call(client, "cancel_request", current.id)
        end
        current = nil
      end
    end,
  })
  return bufnr
end

-- Shows the summary buffer in a window (opening a split when none shows it), keeping focus.
local function show(bufnr)
  if vim.fn.bufwinid(bufnr) ~= -1 then
    return
  end
  local from = vim.api.nvim_get_current_win()
  vim.cmd(session.config.summary.split)
  vim.api.nvim_win_set_buf(0, bufnr)
  pcall(vim.api.nvim_win_set_height, 0, session.config.summary.height)
  vim.wo.wrap = true
  vim.wo.linebreak = true
  vim.api.nvim_set_current_win(from)
end

local function set(bufnr, text, state)
  if not vim.api.nvim_buf_is_valid(bufnr) then
    return
  end
  vim.bo[bufnr].modifiable = true
  vim.api.nvim_buf_set_lines(bufnr, 0, -1, false, vim.split(text, "\n", { plain = true }))
  vim.bo[bufnr].modifiable = false
  local info = vim.b[bufnr].huddle_summary or {}
  info.state = state
  if state == "streaming" then
    info.partials = (info.partials or 0) + 1
  end
  vim.b[bufnr].huddle_summary = info
end

local function heading()
  local line = "# " .. current.title
  if current.progress then
    line = line .. " (" .. current.progress .. ")"
  end
  return line
end

-- Runs a summary command and streams its result into the summary buffer.
function M.run(title, command, arguments)
  local source = vim.api.nvim_get_current_buf()
  local bufnr = buffer()
  if current and current.id then -- a newer summary replaces a running one
    local client = vim.lsp.get_client_by_id(current.client_id)
    if client then
      compat.call(client, "cancel_request", current.id)
    end
  end
  vim.b[bufnr].huddle_summary = { state = "waiting", partials = 0, command = command }
  local this = { bufnr = bufnr, title = title }
  current = this
  set(bufnr, heading() .. "\n\n_Asking the model…_", "waiting")
  show(bufnr)
  local client, id = session.execute(command, arguments, function(err, result)
    if current ~= this then
      return
    end
    this.id = nil
    if err then
      set(bufnr, "# " .. title .. "\n\nHuddle: " .. (err.message or vim.inspect(err)), "failed")
    else
      local markdown = type(result) == "table" and result.markdown or ""
      if not markdown:match("^#") then -- a file's summary is prose: keep the heading
        markdown = "# " .. title .. "\n\n" .. markdown
      end
      set(bufnr, markdown, "done")
    end
  end, source)
  if client then
    this.client_id, this.id = client.id, id
  end
end

session.handlers["huddle/summaryPartial"] = function(_, result, ctx)
  local this = current
  if not this or this.client_id ~= ctx.client_id or type(result) ~= "table" then
    return
  end
  if this.token == nil and this.id then
    this.token = result.token -- the first partial names the running summary
  end
  if result.token == this.token and type(result.text) == "string" and this.id then
    set(this.bufnr, heading() .. "\n\n" .. result.text, "streaming")
  end
end

-- Work-done progress of the running summary, shown in its heading.
vim.api.nvim_create_autocmd("LspProgress", {
  group = vim.api.nvim_create_augroup("huddle.summary", { clear = true }),
  callback = function(args)
    local this = current
    local params = args.data and args.data.params
    if not this or not this.id or not params or type(params.token) ~= "string" then
      return
    end
    local ours = params.token:match("^huddle%-summary%-")
    if not ours or (this.token and this.token ~= params.token) then
      return
    end
    this.token = params.token
    local value = params.value or {}
    if value.percentage then
      this.progress = value.percentage .. "%"
      local lines = vim.api.nvim_buf_get_lines(this.bufnr, 0, 1, false)
      if lines[1] and lines[1]:match("^# ") then
        vim.bo[this.bufnr].modifiable = true
        vim.api.nvim_buf_set_lines(this.bufnr, 0, 1, false, { heading() })
        vim.bo[this.bufnr].modifiable = false
      end
    end
  end,
})

return M
