-- Teammates in your buffers: their cursors and selections as extmarks, their names as virtual
-- text in their colours (from `huddle/peers`); and your own cursor sent as `huddle/cursor`.

local compat = require("huddle.compat")
local session = require("huddle.session")

local M = {}

M.ns = vim.api.nvim_create_namespace("huddle.presence")
M.peers = {} -- client id -> the peers of the last huddle/peers notification

local defined = {} -- colour -> its highlight groups

local function hex(color)
  return tonumber(color:sub(2, 3), 16), tonumber(color:sub(4, 5), 16), tonumber(color:sub(6, 7), 16)
end

-- `color` blended into the editor's background, for a selection that keeps text readable.
local function tint(color, amount)
  local normal = vim.api.nvim_get_hl(0, { name = "Normal", link = false })
  local bg = normal.bg and ("#%06x"):format(normal.bg)
    or (vim.o.background == "light" and "#ffffff" or "#1e1e1e")
  local r1, g1, b1 = hex(color)
  local r2, g2, b2 = hex(bg)
  local function mix(a, b)
    return math.floor(a * amount + b * (1 - amount) + 0.5)
  end
  return ("#%02x%02x%02x"):format(mix(r1, r2), mix(g1, g2), mix(b1, b2))
end

local function contrast(color)
  local r, g, b = hex(color)
  return (0.299 * r + 0.587 * g + 0.114 * b) > 150 and "#000000" or "#ffffff"
end

-- The highlight groups of a teammate's colour: HuddlePeer_RRGGBB (the name),
-- HuddlePeerCursor_RRGGBB and HuddlePeerSelection_RRGGBB.
function M.groups(color)
  if type(color) ~= "string" or not color:match("^#%x%x%x%x%x%x$") then
    color = "#888888"
  end
  color = color:lower()
  if not defined[color] then
    local id = color:sub(2)
    local groups = {
      label = "HuddlePeer_" .. id,
      cursor = "HuddlePeerCursor_" .. id,
      selection = "HuddlePeerSelection_" .. id,
    }
    vim.api.nvim_set_hl(0, groups.label, { fg = contrast(color), bg = color, bold = true })
    vim.api.nvim_set_hl(0, groups.cursor, { fg = contrast(color), bg = color })
    vim.api.nvim_set_hl(0, groups.selection, { bg = tint(color, 0.3) })
    defined[color] = groups
  end
  return defined[color]
end

-- After a colour scheme change (which clears highlight groups): define them again.
function M.reset_highlights()
  defined = {}
  for client_id in pairs(M.peers) do
    M.draw(client_id)
  end
end

local function before(a_row, a_col, b_row, b_col)
  return a_row < b_row or (a_row == b_row and a_col < b_col)
end

local function draw_peer(bufnr, peer, encoding)
  local row, col = compat.from_lsp(bufnr, peer.position, encoding)
  if row == nil then
    return
  end
  local groups = M.groups(peer.color)
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1]
  local selection = peer.selection
  if type(selection) == "table" and selection.start and selection["end"] then
    local s_row, s_col = compat.from_lsp(bufnr, selection.start, encoding)
    local e_row, e_col = compat.from_lsp(bufnr, selection["end"], encoding)
    if s_row and e_row and (s_row ~= e_row or s_col ~= e_col) then
      if before(e_row, e_col, s_row, s_col) then
        s_row, s_col, e_row, e_col = e_row, e_col, s_row, s_col
      end
      vim.api.nvim_buf_set_extmark(bufnr, M.ns, s_row, s_col, {
        end_row = e_row,
        end_col = e_col,
        hl_group = groups.selection,
        priority = 150,
      })
    end
  end
  -- The cursor: the character under it in the teammate's colour, a bar at the end of a line.
  local cursor = { priority = 200 }
  if col < #line then
    local width = #vim.fn.strcharpart(line:sub(col + 1), 0, 1)
    cursor.end_col = col + math.max(width, 1)
    cursor.hl_group = groups.cursor
  else
    cursor.virt_text = { { " ", groups.cursor } }
    cursor.virt_text_pos = "overlay"
  end
  vim.api.nvim_buf_set_extmark(bufnr, M.ns, row, col, cursor)
  -- The name, at the end of the line, out of the way of the text.
  vim.api.nvim_buf_set_extmark(bufnr, M.ns, row, col, {
    virt_text = { { " " .. peer.name .. " ", groups.label } },
    virt_text_pos = "eol",
    hl_mode = "combine",
    priority = 200,
  })
end

-- Redraws every teammate in the buffers of one client.
function M.draw(client_id)
  local client = vim.lsp.get_client_by_id(client_id)
  if not client then
    return
  end
  local peers = M.peers[client_id] or {}
  for bufnr in pairs(client.attached_buffers) do
    if vim.api.nvim_buf_is_loaded(bufnr) then
      vim.api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
      if session.config.presence then
        local uri = vim.uri_from_bufnr(bufnr)
        for _, peer in ipairs(peers) do
          if peer.uri == uri and type(peer.position) == "table" then
            draw_peer(bufnr, peer, client.offset_encoding)
          end
        end
      end
    end
  end
end

session.handlers["huddle/peers"] = function(_, result, ctx)
  if not session.active(ctx.client_id) then
    return
  end
  M.peers[ctx.client_id] = type(result) == "table" and result.peers or {}
  M.draw(ctx.client_id)
  session.changed()
end

-- -- your cursor -----------------------------------------------------------------------------

local function cursor_params(bufnr, encoding)
  local win = vim.api.nvim_get_current_win()
  if vim.api.nvim_win_get_buf(win) ~= bufnr then
    return nil
  end
  local cursor = vim.api.nvim_win_get_cursor(win)
  local row, col = cursor[1] - 1, cursor[2]
  local params = {
    uri = vim.uri_from_bufnr(bufnr),
    position = compat.to_lsp(bufnr, row, col, encoding),
  }
  local mode = vim.api.nvim_get_mode().mode
  if mode == "v" or mode == "V" or mode == "\22" then
    local anchor = vim.fn.getpos("v")
    local a_row, a_col = anchor[2] - 1, anchor[3] - 1
    if mode == "V" then -- whole lines: from the first line's start to the last line's end
      local down = not before(row, col, a_row, a_col)
      a_col = down and 0 or #(vim.api.nvim_buf_get_lines(bufnr, a_row, a_row + 1, false)[1] or "")
      col = down and #(vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or "") or 0
      params.position = compat.to_lsp(bufnr, row, col, encoding)
    elseif not before(row, col, a_row, a_col) then
      -- Visual mode includes the character under the cursor.
      local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
      local width = #vim.fn.strcharpart(line:sub(col + 1), 0, 1)
      params.position = compat.to_lsp(bufnr, row, col + width, encoding)
    end
    params.selection = {
      start = compat.to_lsp(bufnr, a_row, a_col, encoding),
      ["end"] = params.position,
    }
  end
  return params
end

local throttle = {} -- bufnr -> { timer, pending }

local function send_cursor(bufnr)
  local client = session.client(bufnr)
  if not client or not client.attached_buffers[bufnr] then
    return
  end
  local params = cursor_params(bufnr, client.offset_encoding)
  if params then
    compat.call(client, "notify", "huddle/cursor", params)
  end
end

-- Sends at once, then at most once per `cursor_throttle_ms`, always ending on the latest.
local function cursor_moved(bufnr)
  local state = throttle[bufnr]
  if state and state.timer then
    state.pending = true
    return
  end
  send_cursor(bufnr)
  state = state or {}
  throttle[bufnr] = state
  state.timer = vim.defer_fn(function()
    state.timer = nil
    if state.pending then
      state.pending = false
      cursor_moved(bufnr)
    end
  end, session.config.cursor_throttle_ms)
end

function M.attach(_, bufnr)
  local group = vim.api.nvim_create_augroup("huddle.presence." .. bufnr, { clear = true })
  vim.api.nvim_create_autocmd({ "CursorMoved", "CursorMovedI", "BufEnter", "ModeChanged" }, {
    group = group,
    buffer = bufnr,
    callback = function()
      cursor_moved(bufnr)
    end,
  })
  vim.api.nvim_create_autocmd("BufUnload", {
    group = group,
    buffer = bufnr,
    callback = function()
      throttle[bufnr] = nil
      pcall(vim.api.nvim_del_augroup_by_id, group)
    end,
  })
end

function M.detach(client_id)
  M.peers[client_id] = nil
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr) then
      vim.api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
    end
  end
  for other in pairs(M.peers) do
    M.draw(other)
  end
end

-- The names of the teammates in the current buffer's room.
function M.names(bufnr)
  local client = session.client(bufnr)
  local names = {}
  for _, peer in ipairs(client and M.peers[client.id] or {}) do
    if peer.name ~= "" and not vim.tbl_contains(names, peer.name) then
      table.insert(names, peer.name)
    end
  end
  table.sort(names)
  return names
end

table.insert(session.on_attach, M.attach)
table.insert(session.on_detach, M.detach)

return M
