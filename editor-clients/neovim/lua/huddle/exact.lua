-- Exact changes. Neovim's LSP client reports a change as a diff of lines (the span between
-- the old and new line's common prefix and suffix): "x1" typed before "xyz" arrives as "1x"
-- inserted after its "x", which puts a teammate's concurrent edit in the wrong place. The
-- buffer knows what really changed (`on_bytes`): each change goes to `huddle lsp` as
-- `huddle/changes` { textDocument = { uri, version = changedtick }, changes = { { range, text } } }
-- (ranges in UTF-8 byte columns; `changes = nil` where it could not be read back), sent at once
-- and so before Neovim's debounced didChange that reports it, which huddle lsp then replaces by
-- the changes received since the previous one where both lead to the same text. The tick is the
-- one `on_bytes` sees: for most changes the one before the change (its didChange version is the
-- next), for some (put, undo) the change's own; huddle lsp only uses it as a bound.

local session = require("huddle.session")

local M = {}

local attached = {} -- bufnr -> client id whose changes are reported

-- The text between two (row, byte column) positions of the buffer as it is now; a row past the
-- last line is the line break Neovim keeps after it ('eol'). nil where it cannot be read.
local function text_between(bufnr, srow, scol, erow, ecol)
  local count = vim.api.nvim_buf_line_count(bufnr)
  if srow >= count then
    return nil
  end
  local tail = ""
  if erow >= count then
    if erow > count or ecol ~= 0 then
      return nil
    end
    erow = count - 1
    ecol = #vim.api.nvim_buf_get_lines(bufnr, erow, erow + 1, true)[1]
    tail = "\n"
  end
  local ok, lines = pcall(vim.api.nvim_buf_get_text, bufnr, srow, scol, erow, ecol, {})
  if not ok then
    return nil
  end
  return table.concat(lines, "\n") .. tail
end

function M.attach(client, bufnr)
  if attached[bufnr] == client.id then
    return
  end
  attached[bufnr] = client.id
  local uri = vim.uri_from_bufnr(bufnr)
  local id = client.id
  vim.api.nvim_buf_attach(bufnr, false, {
    on_bytes = function(_, buf, tick, srow, scol, _, oer, oec, _, ner, nec)
      local current = vim.lsp.get_client_by_id(id)
      if attached[buf] ~= id or not current or not current.attached_buffers[buf] then
        attached[buf] = nil
        return true -- detach
      end
      local erow, ecol = srow + oer, (oer == 0 and scol + oec or oec)
      local text = text_between(buf, srow, scol, srow + ner, (ner == 0 and scol + nec or nec))
      local changes = vim.NIL
      if text ~= nil then
        changes = {
          {
            range = {
              start = { line = srow, character = scol },
              ["end"] = { line = erow, character = ecol },
            },
            text = text,
          },
        }
      end
      -- The RPC channel itself: the client's notify() would flush the debounced didChange.
      current.rpc.notify("huddle/changes", {
        textDocument = { uri = uri, version = tick },
        changes = changes,
      })
    end,
    on_detach = function(_, buf)
      attached[buf] = nil
    end,
  })
end

table.insert(session.on_attach, M.attach)

return M
