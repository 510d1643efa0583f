-- What differs between the Neovim versions the plugin supports (0.10 and later): client
-- methods, and the conversion between buffer byte columns and LSP position encodings.

local M = {}

M.has_0_11 = vim.fn.has("nvim-0.11") == 1
-- `vim.lsp.inline_completion` (0.12) renders ghost text itself; older versions get ours.
M.builtin_inline_completion = vim.lsp.inline_completion ~= nil

-- Calls a client method: `client:name(...)` since 0.11, `client.name(...)` before.
function M.call(client, name, ...)
  if M.has_0_11 then
    return client[name](client, ...)
  end
  return client[name](...)
end

-- The byte column of LSP `character` in `line` under `encoding`, clamped to the line.
function M.byte_col(line, character, encoding)
  if encoding == "utf-8" then
    return math.min(character, #line)
  end
  local ok, col
  if M.has_0_11 then
    ok, col = pcall(vim.str_byteindex, line, encoding, character, false)
  else
    ok, col = pcall(vim.str_byteindex, line, character, encoding == "utf-16")
  end
  return ok and math.min(col, #line) or #line
end

-- The LSP `character` of byte column `col` in `line` under `encoding`.
function M.character(line, col, encoding)
  col = math.min(col, #line)
  if encoding == "utf-8" then
    return col
  end
  if M.has_0_11 then
    return vim.str_utfindex(line, encoding, col, false)
  end
  local utf32, utf16 = vim.str_utfindex(line, col)
  return encoding == "utf-16" and utf16 or utf32
end

local function line_of(bufnr, row)
  return vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1]
end

-- An LSP position as a 0-based (row, byte column) of the buffer, or nil past its end.
function M.from_lsp(bufnr, position, encoding)
  local line = line_of(bufnr, position.line)
  if line == nil then
    return nil
  end
  return position.line, M.byte_col(line, position.character, encoding)
end

-- A 0-based (row, byte column) of the buffer as an LSP position.
function M.to_lsp(bufnr, row, col, encoding)
  local line = line_of(bufnr, row) or ""
  return { line = row, character = M.character(line, col, encoding) }
end

return M
