-- One Neovim of the real-editor fuzzer (tests/editor_fuzz.py), driven over msgpack-RPC.
--
-- `dofile` returns this table (the fuzzer keeps it as the global EditorFuzz). The fuzzer reads
-- the buffer (`view`), picks an edit on what it read and sends it back with the buffer's
-- changedtick: `apply` makes the edit only if the tick is still the same, so every edit is
-- made on exactly the text it was chosen on (a teammate's edit in between: the fuzzer reads
-- again and chooses anew). That is what lets the fuzzer know, exactly, which markers each
-- deletion removed.

local api = vim.api
local M = { buf = nil, client_id = nil, apply_edits = 0, status = nil }

-- Every workspace/applyEdit request any client of this Neovim receives (plain LSP and the
-- plugin both use the default handler).
local default_apply = vim.lsp.handlers["workspace/applyEdit"]
vim.lsp.handlers["workspace/applyEdit"] = function(...)
  M.apply_edits = M.apply_edits + 1
  return default_apply(...)
end

function M.open(file)
  vim.cmd("edit " .. vim.fn.fnameescape(file))
  M.buf = api.nvim_get_current_buf()
  return M.buf
end

-- Plain LSP: `huddle lsp` attached to the buffer, as a user's own config would start it.
function M.start_plain(cmd, root, init_options)
  local config = {
    name = "huddle",
    cmd = cmd,
    root_dir = root,
    init_options = init_options,
    handlers = {
      ["huddle/status"] = function(_, result)
        if type(result) == "table" then
          M.status = result.state
        end
      end,
      ["huddle/peers"] = function() end,
    },
  }
  if vim.lsp.start then
    M.client_id = vim.lsp.start(config, { bufnr = M.buf })
  else -- Neovim 0.7
    M.client_id = vim.lsp.start_client(config)
    assert(vim.lsp.buf_attach_client(M.buf, M.client_id), "buf_attach_client failed")
  end
  assert(M.client_id, "the LSP client did not start")
end

-- The buffer as the fuzzer models it: lines, 'eol', 'fileformat' and the changedtick.
function M.view()
  return {
    lines = api.nvim_buf_get_lines(M.buf, 0, -1, true),
    eol = api.nvim_buf_get_option(M.buf, "eol"),
    ff = api.nvim_buf_get_option(M.buf, "fileformat"),
    tick = api.nvim_buf_get_changedtick(M.buf),
    status = M.status or vim.NIL,
  }
end

-- Replace (r1, c1)-(r2, c2) (byte columns) by `lines`, if the buffer is still at `tick`.
-- r1 == line count: append `lines` as new lines after the last one.
function M.apply(tick, r1, c1, r2, c2, lines)
  if api.nvim_buf_get_changedtick(M.buf) ~= tick then
    return vim.NIL
  end
  if r1 == api.nvim_buf_line_count(M.buf) then
    api.nvim_buf_set_lines(M.buf, r1, r1, true, lines)
  else
    api.nvim_buf_set_text(M.buf, r1, c1, r2, c2, lines)
  end
  return M.view()
end

-- huddle lsp's own account (`huddle.status`): its repairs, for the final check.
function M.server_status()
  local replies = vim.lsp.buf_request_sync(
    M.buf,
    "workspace/executeCommand",
    { command = "huddle.status", arguments = {} },
    5000
  )
  for _, reply in pairs(replies or {}) do
    if reply.result and reply.result.repairs ~= nil then
      return reply.result
    end
  end
  return vim.NIL
end

return M
