-- One headless Neovim of tests/test_neovim_e2e.py: it attaches `huddle lsp` to a buffer, types
-- random edits into it, and reports what it did and what its buffer ends up holding.
--
-- Started as `nvim --headless --clean -n -i NONE -c "luafile tests/nvim/fuzz.lua"` with
-- settings in HUDDLE_E2E_* environment variables. It talks to the test through files in
-- HUDDLE_E2E_CONTROL (each written under a temporary name and renamed into place):
--
--   test -> nvim   OPEN_AFTER (optional)  open the buffer only once this file exists
--   nvim -> test   NAME.ready             connected, and the buffer holds the room's text
--   test -> nvim   go                     both editors are ready: start typing
--   nvim -> test   NAME.done.json         all edits made (with the marks inserted and deleted)
--   nvim -> test   NAME.snap              the buffer as the server sees it, rewritten on change
--   test -> nvim   quit                   write NAME.result.txt and NAME.result.json, exit 0
--   nvim -> test   NAME.error             something went wrong; Neovim exits with status 3
--
-- Other settings: EDITS (how many), SEED, MIN_DELAY_MS/MAX_DELAY_MS (between edits),
-- DEBOUNCE_MS (the client's debounce_text_changes, 20 by default), SCRIPTED (fixed edits
-- instead of random ones: {row, col, end_row, end_col, text} or {"append", lines}), TAP and
-- JOURNAL (record the LSP traffic and every buffer state).
--
-- Marks: every insert may carry a character used nowhere else, a "mark" (editor a: U+3400 and
-- up, 3 bytes in UTF-8; editor b: U+20000 and up, 4 bytes in UTF-8 and a surrogate pair in
-- UTF-16). Single characters, because an LSP editor reports a change as the span between the
-- common prefix and suffix of the old and new line: typing "[a1]" before "[b2]" reaches the
-- server as "a1][" after the "[", so a concurrent deletion of "[b2]" may legitimately cut a
-- multi-character token apart. A character cannot be cut, so each mark must end up in the
-- document exactly once unless some editor deleted it.

local uv = vim.loop
local api = vim.api

local function env(key, default)
  local value = os.getenv("HUDDLE_E2E_" .. key)
  if value == nil or value == "" then
    if default == nil then
      error("HUDDLE_E2E_" .. key .. " is not set")
    end
    return default
  end
  return value
end

local NAME = env("NAME")
local FILE = env("FILE")
local ROOT = env("ROOT")
local CONTROL = env("CONTROL")
local PYTHON = env("PYTHON")
local INIT_OPTIONS = vim.fn.json_decode(env("INIT"))
local MARK_BASE = tonumber(env("MARK_BASE"))
local EDITS = tonumber(env("EDITS", "300"))
local SEED = tonumber(env("SEED", "1"))
local INITIAL = env("INITIAL_FILE")
local OPEN_AFTER = env("OPEN_AFTER", "")
local DEADLINE_MS = tonumber(env("DEADLINE_MS", "120000"))
-- Instead of random edits, these ones: a JSON list of [row, col, end_row, end_col, text].
local SCRIPTED = vim.fn.json_decode(env("SCRIPTED", "null"))
local DEBOUNCE = tonumber(env("DEBOUNCE_MS", "20"))
local MIN_DELAY = tonumber(env("MIN_DELAY_MS", "10"))
local MAX_DELAY = tonumber(env("MAX_DELAY_MS", "30"))
local LSP_LOG_LEVEL = env("LSP_LOG_LEVEL", "info")
local NVIM_LOG_LEVEL = env("NVIM_LOG_LEVEL", "warn")
local STDERR = env("LSP_STDERR")
local TAP = env("TAP", "") -- record the LSP traffic into this JSONL file (lsp_tap.py)
-- After the edits, once this control file exists, send the pending didChange at once (any LSP
-- request flushes Neovim's debounced changes first): with a long DEBOUNCE_MS the test decides
-- when Neovim reports what it typed.
local FLUSH_ON = env("FLUSH_ON", "")
local JOURNAL = env("JOURNAL", "") -- record every buffer state and own edit into this file

-- Marks of the initial text (U+0410..), of editor a (U+3400..) and of editor b (U+20000..).
local MARK_RANGES = { { 0x0410, 0x042F }, { 0x3400, 0x4DBF }, { 0x20000, 0x2A6DF } }
local FILLERS = { "x", "y", "z", " ", "é", "ß", "中", "文", "😀", "\n" }

local state = {
  status = nil, -- the state of the last huddle/status notification
  repairs = nil, -- the repairs it counted (huddle's safety net; 0 in a correct run)
  client_id = nil,
  buf = nil,
  edits = 0,
  marks = 0,
  inserted = {}, -- marks this editor inserted
  deleted = {}, -- marks this editor deleted
  invalid = 0, -- edits that found bytes in the buffer that are not UTF-8
  finished = false,
  initialized = false,
  journal = nil, -- file handle
}

-- -- files ------------------------------------------------------------------------------------

local function path(name)
  return CONTROL .. "/" .. name
end

local function write_file(target, data)
  local tmp = target .. ".tmp"
  local f = assert(io.open(tmp, "wb"))
  f:write(data)
  f:close()
  assert(os.rename(tmp, target))
end

local function read_file(target)
  local f = assert(io.open(target, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

local function exists(target)
  return uv.fs_stat(target) ~= nil
end

-- Records are "KIND TICK LENGTH\n", LENGTH raw bytes, "\n": T = the buffer's text after a change
-- (lines joined by "\n"), E = an edit this editor is about to make (JSON).
local function journal(kind, tick, payload)
  if state.journal then
    state.journal:write(kind .. " " .. tick .. " " .. #payload .. "\n", payload, "\n")
  end
end

local function fail(message)
  if state.finished then
    return
  end
  state.finished = true
  pcall(write_file, path(NAME .. ".error"), tostring(message))
  vim.cmd("cquit 3")
end

-- Calls `cb` once `pred()` holds, polling every 20 ms; fails after `timeout_ms`.
local function wait_until(what, timeout_ms, pred, cb)
  local timer = uv.new_timer()
  local start = uv.now()
  timer:start(
    0,
    20,
    vim.schedule_wrap(function()
      if timer:is_closing() or state.finished then
        return
      end
      local ok, result = pcall(pred)
      if ok and not result and uv.now() - start <= timeout_ms then
        return
      end
      timer:stop()
      timer:close()
      if not ok then
        fail("error while waiting for " .. what .. ": " .. tostring(result))
      elseif not result then
        fail("timed out after " .. timeout_ms .. " ms waiting for " .. what)
      else
        local cb_ok, err = pcall(cb)
        if not cb_ok then
          fail("error after " .. what .. ": " .. tostring(err))
        end
      end
    end)
  )
end

-- -- the buffer -------------------------------------------------------------------------------

local function buffer_text()
  return table.concat(api.nvim_buf_get_lines(state.buf, 0, -1, true), "\n")
end

-- The text as the language server sees it: Neovim adds the final line break of 'eol'.
local function server_text()
  local text = buffer_text()
  if api.nvim_buf_get_option(state.buf, "eol") then
    text = text .. "\n"
  end
  return text
end

local function split_lines(s)
  local lines = {}
  local start = 1
  while true do
    local nl = s:find("\n", start, true)
    if nl == nil then
      table.insert(lines, s:sub(start))
      return lines
    end
    table.insert(lines, s:sub(start, nl - 1))
    start = nl + 1
  end
end

-- The UTF-8 encoding of code point `cp`.
local function utf8_char(cp)
  if cp < 0x80 then
    return string.char(cp)
  elseif cp < 0x800 then
    return string.char(0xC0 + math.floor(cp / 0x40), 0x80 + cp % 0x40)
  elseif cp < 0x10000 then
    return string.char(
      0xE0 + math.floor(cp / 0x1000),
      0x80 + math.floor(cp / 0x40) % 0x40,
      0x80 + cp % 0x40
    )
  end
  return string.char(
    0xF0 + math.floor(cp / 0x40000),
    0x80 + math.floor(cp / 0x1000) % 0x40,
    0x80 + math.floor(cp / 0x40) % 0x40,
    0x80 + cp % 0x40
  )
end

-- The characters of `text`: { s = first byte (0-based), e = end byte (exclusive), cp = code
-- point }. A byte that does not start a valid UTF-8 sequence is a character of its own (cp nil).
local function characters(text)
  local chars = {}
  local i, n = 1, #text
  while i <= n do
    local b = text:byte(i)
    local len, cp = 1, nil
    if b < 0x80 then
      cp = b
    elseif b >= 0xC0 and b < 0xF8 then
      len = b >= 0xF0 and 4 or b >= 0xE0 and 3 or 2
      cp = b % (2 ^ (7 - len))
      for k = i + 1, i + len - 1 do
        local c = text:byte(k)
        if c == nil or c < 0x80 or c >= 0xC0 then
          len, cp = 1, nil
          break
        end
        cp = cp * 0x40 + c % 0x40
      end
    end
    if cp == nil then
      state.invalid = state.invalid + 1
    end
    table.insert(chars, { s = i - 1, e = i - 1 + len, cp = cp })
    i = i + len
  end
  return chars
end

local function is_mark(cp)
  for _, range in ipairs(MARK_RANGES) do
    if cp ~= nil and cp >= range[1] and cp <= range[2] then
      return true
    end
  end
  return false
end

-- A byte offset in the text (lines joined with "\n") as a (row, col) buffer position.
local function position(text, offset)
  local row, line_start = 0, 0
  local from = 1
  while true do
    local nl = text:find("\n", from, true)
    if nl == nil or nl > offset then
      return row, offset - line_start
    end
    row = row + 1
    line_start = nl
    from = nl + 1
  end
end

local function set_text(text, first, last, replacement)
  local r1, c1 = position(text, first)
  local r2, c2 = position(text, last)
  if state.journal then
    local edit = { first = first, last = last, text = replacement, range = { r1, c1, r2, c2 } }
    journal("E", api.nvim_buf_get_changedtick(state.buf), vim.fn.json_encode(edit))
  end
  api.nvim_buf_set_text(state.buf, r1, c1, r2, c2, split_lines(replacement))
end

-- -- random edits ---------------------------------------------------------------------------

local function fillers(count)
  local out = {}
  for _ = 1, count do
    table.insert(out, FILLERS[math.random(#FILLERS)])
  end
  return table.concat(out)
end

local function new_content()
  if math.random() < 0.5 then
    local mark = utf8_char(MARK_BASE + state.marks)
    state.marks = state.marks + 1
    table.insert(state.inserted, mark)
    return fillers(math.random(0, 1)) .. mark .. fillers(math.random(0, 1))
  end
  return fillers(math.random(1, 3))
end

-- Insert at a random character boundary, or delete (or replace) 1 to 3 whole characters.
local function random_edit()
  if SCRIPTED ~= vim.NIL then
    local e = SCRIPTED[state.edits + 1]
    if e[1] == "append" then -- whole lines after the last (as :put or `o` add them)
      api.nvim_buf_set_lines(state.buf, -1, -1, false, split_lines(e[2]))
    else
      api.nvim_buf_set_text(state.buf, e[1], e[2], e[3], e[4], split_lines(e[5]))
    end
    return
  end
  local text = buffer_text()
  local chars = characters(text)
  local kind = math.random()
  if #chars < 40 or kind < 0.55 then
    local at = math.random(0, #chars)
    local offset = at < #chars and chars[at + 1].s or #text
    set_text(text, offset, offset, new_content())
    return
  end
  local first = math.random(1, #chars)
  local last = math.min(#chars, first + math.random(0, 2))
  for k = first, last do
    if is_mark(chars[k].cp) then
      table.insert(state.deleted, utf8_char(chars[k].cp))
    end
  end
  local replacement = kind < 0.9 and "" or new_content()
  set_text(text, chars[first].s, chars[last].e, replacement)
end

-- -- the protocol -----------------------------------------------------------------------------

local function report()
  local client = state.client_id and vim.lsp.get_client_by_id(state.client_id)
  local version = vim.version()
  return {
    name = NAME,
    nvim = version.major .. "." .. version.minor .. "." .. version.patch,
    edits = state.edits,
    inserted = state.inserted,
    deleted = state.deleted,
    invalid = state.invalid,
    status = state.status or vim.NIL,
    repairs = state.repairs or vim.NIL,
    offset_encoding = client and client.offset_encoding or vim.NIL,
    changedtick = api.nvim_buf_get_changedtick(state.buf),
    messages = vim.fn.execute("messages"),
  }
end

local function finish()
  wait_until("the quit file", DEADLINE_MS, function()
    return exists(path("quit"))
  end, function()
    -- The text goes raw into a file of its own: it need not be valid UTF-8.
    write_file(path(NAME .. ".result.txt"), server_text())
    write_file(path(NAME .. ".result.json"), vim.fn.json_encode(report()))
    if state.journal then
      state.journal:close()
      state.journal = nil
    end
    state.finished = true
    vim.cmd("qall!")
  end)
end

local function snapshots()
  local last_tick = -1
  local timer = uv.new_timer()
  timer:start(
    0,
    50,
    vim.schedule_wrap(function()
      if state.finished or timer:is_closing() then
        return
      end
      local tick = api.nvim_buf_get_changedtick(state.buf)
      if tick ~= last_tick then
        last_tick = tick
        write_file(path(NAME .. ".snap"), server_text())
      end
    end)
  )
end

local function type_edits()
  if state.finished then
    return
  end
  -- Now and then a burst, so that one didChange carries several changes.
  local burst = math.random() < 0.1 and math.random(2, 3) or 1
  for _ = 1, burst do
    if state.edits < EDITS then
      random_edit()
      state.edits = state.edits + 1
    end
  end
  if state.edits < EDITS then
    vim.defer_fn(function()
      local ok, err = pcall(type_edits)
      if not ok then
        fail("edit failed: " .. tostring(err))
      end
    end, math.random(MIN_DELAY, MAX_DELAY))
    return
  end
  write_file(
    path(NAME .. ".done.json"),
    vim.fn.json_encode({ inserted = state.inserted, deleted = state.deleted })
  )
  snapshots()
  if FLUSH_ON ~= "" then
    wait_until("the flush file", DEADLINE_MS, function()
      return exists(path(FLUSH_ON))
    end, function()
      vim.lsp.buf_request(
        state.buf,
        "workspace/executeCommand",
        { command = "huddle.status", arguments = {} },
        function() end
      )
    end)
  end
  finish()
end

local function start_client()
  local cmd = {
    "sh",
    "-c",
    'exec "$0" -m huddle.cli lsp --log-level "$1" 2>>"$2"',
    PYTHON,
    LSP_LOG_LEVEL,
    STDERR,
  }
  if TAP ~= "" then
    local here = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h")
    cmd[3] = 'exec "$0" "$3" "$4" -- "$0" -m huddle.cli lsp --log-level "$1" 2>>"$2"'
    table.insert(cmd, here .. "/lsp_tap.py")
    table.insert(cmd, TAP)
  end
  local config = {
    name = "huddle",
    cmd = cmd,
    root_dir = ROOT,
    init_options = INIT_OPTIONS,
    flags = { debounce_text_changes = DEBOUNCE },
    handlers = {
      ["huddle/status"] = function(_, result)
        if type(result) == "table" then
          state.status = result.state
          state.repairs = result.repairs
        end
      end,
      ["huddle/peers"] = function() end,
    },
    on_init = function()
      state.initialized = true
    end,
    on_exit = function(code, signal)
      if not state.finished then
        vim.schedule(function()
          fail("huddle lsp exited (code " .. tostring(code) .. ", signal " .. tostring(signal) .. ")")
        end)
      end
    end,
  }
  if vim.lsp.start then
    state.client_id = vim.lsp.start(config, { bufnr = state.buf })
  else -- Neovim 0.7
    state.client_id = vim.lsp.start_client(config)
    assert(vim.lsp.buf_attach_client(state.buf, state.client_id), "buf_attach_client failed")
  end
  assert(state.client_id, "the LSP client did not start")
end

local function open()
  vim.cmd("edit " .. vim.fn.fnameescape(FILE))
  state.buf = api.nvim_get_current_buf()
  if JOURNAL ~= "" then
    state.journal = assert(io.open(JOURNAL, "wb"))
    journal("T", api.nvim_buf_get_changedtick(state.buf), buffer_text())
    api.nvim_buf_attach(state.buf, false, {
      on_lines = function(_, buf, tick)
        if state.journal then
          journal("T", tick, table.concat(api.nvim_buf_get_lines(buf, 0, -1, true), "\n"))
        end
      end,
    })
  end
  start_client()
  local initial = read_file(INITIAL)
  wait_until("the LSP client to initialize (see huddle-lsp.log)", 15000, function()
    return state.initialized
  end, function() end)
  wait_until("the room's text in the buffer", 30000, function()
    return state.status == "connected" and server_text() == initial
  end, function()
    if FLUSH_ON ~= "" then
      -- Report the room's text (the echo of its edit) now, not after DEBOUNCE_MS: the test's
      -- typing then comes after it, on a version huddle lsp knows.
      vim.lsp.buf_request(
        state.buf,
        "workspace/executeCommand",
        { command = "huddle.status", arguments = {} },
        function() end
      )
    end
    write_file(path(NAME .. ".ready"), "")
    wait_until("the go file", 30000, function()
      return exists(path("go"))
    end, type_edits)
  end)
end

local function main()
  math.randomseed(SEED)
  vim.o.hidden = true
  vim.o.swapfile = false
  vim.o.more = false
  vim.lsp.set_log_level(NVIM_LOG_LEVEL)
  vim.defer_fn(function()
    fail("deadline of " .. DEADLINE_MS .. " ms passed")
  end, DEADLINE_MS)
  if OPEN_AFTER ~= "" then
    wait_until("the open file", 30000, function()
      return exists(path(OPEN_AFTER))
    end, open)
  else
    open()
  end
end

local ok, err = pcall(main)
if not ok then
  fail("startup failed: " .. tostring(err))
end
