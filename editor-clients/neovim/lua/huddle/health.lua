-- :checkhealth huddle

local M = {}

function M.check()
  local health = vim.health
  local huddle = require("huddle")
  local session = require("huddle.session")
  local config = require("huddle.config")

  health.start("huddle")
  local version = tostring(vim.version())
  if vim.fn.has("nvim-0.10") == 1 then
    health.ok("Neovim " .. version)
  else
    health.error("Neovim " .. version .. " is too old: Huddle needs 0.10 or newer")
  end
  if vim.lsp.inline_completion then
    health.ok("ghost text: Neovim's vim.lsp.inline_completion, with streamed partials")
  else
    health.ok("ghost text: huddle's own renderer (vim.lsp.inline_completion needs Neovim 0.12)")
  end

  if not huddle.did_setup then
    health.warn("require('huddle').setup() has not been called", { "Call it from your init.lua" })
  end
  local opts = session.config or config.resolve({})
  local errors = huddle.did_setup and huddle.errors or config.validate(opts)
  if #errors == 0 then
    health.ok("settings are valid")
  else
    for _, err in ipairs(errors) do
      health.error("invalid setting: " .. err, { "Fix it in require('huddle').setup({...})" })
    end
  end

  local cmd = session.config and session.command(session.root_dir(0)) or { "huddle", "lsp" }
  local exe = vim.fn.exepath(cmd[1])
  if exe ~= "" then
    health.ok(("language server: `%s` (%s)"):format(table.concat(cmd, " "), exe))
  else
    health.error(("`%s` is not executable"):format(cmd[1]), {
      "Install Huddle (`pip install huddle`, or ./dev in a checkout) so `huddle` is on PATH",
      "or set `cmd = { '/path/to/huddle', 'lsp' }` in setup()",
    })
  end

  local client = session.config and session.client(0)
  local status = client and session.status[client.id]
  if status then
    local where = status.solo and "solo" or status.hub
    local report = ("%s: room %s on %s as %s"):format(
      status.state,
      tostring(status.room),
      tostring(where),
      tostring(status.user)
    )
    if status.state == "connected" or status.state == "read-only" then
      health.ok(report)
    else
      health.warn(report .. ((status.reason or "") ~= "" and (" (" .. status.reason .. ")") or ""))
    end
  else
    health.info("no huddle client for the current buffer")
  end
end

return M
