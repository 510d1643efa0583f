"""A real Neovim with the plugin (editor-clients/neovim) loaded, driven over msgpack-RPC:
headless (`--embed`) for the tests, or with its terminal UI in tmux (`--listen`) for the
README's screenshot."""

from __future__ import annotations

import asyncio
import inspect
import os
import shlex
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.nvim_plugin.rpc import Nvim, NvimError
from tests.support.peers import eventually

ROOT = Path(__file__).resolve().parent.parent.parent
PLUGIN = ROOT / "editor-clients" / "neovim"

# Bounds, not guesses: every wait ends as soon as its condition holds.
CONNECT_TIMEOUT = 30.0
SYNC_TIMEOUT = 15.0
MODEL_TIMEOUT = 90.0  # the embedded model starts at the first AI request, on a busy machine


def launcher(version: str) -> Path:
    path = ROOT / ".cache" / "neovim" / version / "nvim"
    if not path.exists():
        pytest.skip(f"Neovim {version} is not installed (scripts/neovim.sh install)")
    return path


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(none)"
    kept = [
        line
        for line in path.read_text(errors="replace").splitlines()
        if "DEBUG websockets" not in line and "DEBUG huddle.ws" not in line
    ]
    return "\n".join(kept[-lines:])


class Editor:
    """One headless Neovim with the plugin, its own workspace and XDG folders."""

    def __init__(self, name: str, version: str, base: Path) -> None:
        self.name = name
        self.version = version
        self.home = base / f"nvim-{name}"
        self.workspace = self.home / "ws"
        self.workspace.mkdir(parents=True)
        (self.workspace / ".git").mkdir()  # the workspace root the plugin detects
        self.stderr = self.home / "nvim.stderr"
        self.lsp_log = self.home / "huddle-lsp.log"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NVIM", "NVIM_APPNAME", "VIMINIT", "MYVIMRC", "DISPLAY", "WAYLAND_DISPLAY")
            and not k.startswith("HUDDLE_")
        }
        for xdg in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
            self.env[xdg] = str(self.home / xdg.lower())
        self.proc: asyncio.subprocess.Process | None = None
        self.tmux: list[str] = []
        self.socket: Path | None = None
        self._nvim: Nvim | None = None

    @property
    def nvim(self) -> Nvim:
        assert self._nvim is not None, "not started"
        return self._nvim

    def write(self, path: str, text: str) -> None:
        target = self.workspace / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def lsp_cmd(self) -> list[str]:
        """`huddle lsp` of this interpreter, its debug log in a file of this editor's."""
        script = 'exec "$0" -m huddle.cli lsp --log-level debug 2>>"$1"'
        return ["sh", "-c", script, sys.executable, str(self.lsp_log)]

    async def start(self, *, listen: bool = False, **settings: Any) -> None:
        """Starts Neovim (`--embed`); ``listen``: also on a socket, for a terminal UI."""
        args = ["--embed", "--headless", "--clean", "-n", "-i", "NONE"]
        args += ["--cmd", f"set rtp^={PLUGIN}"]
        if listen:
            self.socket = self.home / "nvim.sock"
            args += ["--listen", str(self.socket)]
        with self.stderr.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                str(launcher(self.version)),
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                cwd=self.workspace,
                env=self.env,
            )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self._nvim = Nvim(self.proc.stdout, self.proc.stdin)
        await self.nvim.command("set noswapfile hidden shortmess+=F")
        if settings:
            await self.setup(**settings)

    async def show_in_tmux(self, server: str, width: int, height: int) -> None:
        """Attaches Neovim's terminal UI, in a detached session of a private tmux server.

        The UI connects to the running Neovim (`--remote-ui`): a standalone TUI would start
        its own server as `v:progpath --embed`, which is the dynamic loader in our prefix."""
        assert self.socket is not None, "start(listen=True) first"
        conf = self.home / "tmux.conf"
        conf.write_text(
            'set -g default-terminal "tmux-256color"\nset -as terminal-features ",*:RGB"\n'
        )
        ui = [str(launcher(self.version)), "--remote-ui", "--server", str(self.socket)]
        size = ["-x", str(width), "-y", str(height)]
        self.tmux = ["tmux", "-L", server, "-f", str(conf)]
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-s", self.name, *size, shlex.join(ui)],
            env=self.env,
            check=True,
        )

        async def attached() -> bool:
            uis = await self.nvim.request("nvim_list_uis")
            return bool(uis)

        await self.wait("the terminal UI", attached)

    def capture(self, *, ansi: bool) -> str:
        """What the tmux pane shows, with its colours as ANSI escapes when ``ansi``."""
        flags = ["-e"] if ansi else []
        return subprocess.run(
            [*self.tmux, "capture-pane", "-p", *flags, "-t", self.name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    async def setup(self, **settings: Any) -> None:
        await self.nvim.lua("require('huddle').setup(...)", settings)

    async def stop(self) -> None:
        if self._nvim is not None:
            await self._nvim.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self.tmux:
            subprocess.run([*self.tmux, "kill-server"], capture_output=True, check=False)

    async def lua(self, code: str, *args: Any) -> Any:
        return await self.nvim.lua(code, *args)

    async def lines(self, bufnr: int = 0) -> list[str]:
        result: list[str] = await self.lua(
            "return vim.api.nvim_buf_get_lines(..., 0, -1, true)", bufnr
        )
        return result

    async def statusline(self) -> str:
        return str(await self.lua("return require('huddle').statusline()"))

    async def cursor(self) -> tuple[int, int]:
        row, col = await self.lua("return vim.api.nvim_win_get_cursor(0)")
        return row - 1, col

    async def mode(self) -> str:
        return str((await self.nvim.request("nvim_get_mode"))["mode"])

    async def summary(self) -> dict[str, Any] | None:
        """The summary scratch buffer: its lines, state and options; None before there is one."""
        summary = await self.lua(
            """
            local b = vim.fn.bufnr('huddle://summary')
            if b == -1 then return vim.NIL end
            return {
              lines = vim.api.nvim_buf_get_lines(b, 0, -1, true),
              info = vim.b[b].huddle_summary,
              buftype = vim.bo[b].buftype,
              filetype = vim.bo[b].filetype,
              shown = vim.fn.bufwinid(b) ~= -1,
              current = vim.api.nvim_get_current_buf() ~= b,
            }
            """
        )
        return summary if isinstance(summary, dict) else None

    async def wait_summary(self) -> dict[str, Any]:
        """Until the running summary is done (or failed); the summary buffer then."""

        async def finished() -> bool:
            summary = await self.summary()
            return summary is not None and summary["info"]["state"] in ("done", "failed")

        await self.wait("the summary", finished, MODEL_TIMEOUT)
        summary = await self.summary()
        assert summary is not None
        return summary

    async def diagnostics(self) -> str:
        messages = "(unavailable)"
        if self.proc is not None and self.proc.returncode is None:
            try:
                messages = await asyncio.wait_for(
                    self.lua("return vim.api.nvim_exec2('messages', { output = true }).output"), 5
                )
            except (NvimError, TimeoutError) as exc:
                messages = f"(unavailable: {exc})"
        return (
            f"--- nvim {self.name} ({self.version}) :messages:\n{messages}\n"
            f"--- nvim {self.name} stderr:\n{tail(self.stderr, 10)}\n"
            f"--- huddle lsp {self.name} (full log: {self.lsp_log}):\n{tail(self.lsp_log)}\n"
        )

    async def wait(
        self,
        what: str,
        check: Callable[[], Awaitable[bool]] | Callable[[], bool],
        timeout: float = SYNC_TIMEOUT,
    ) -> None:
        """Poll ``check``; fail early when Neovim died, and with its diagnostics."""

        async def alive_and_true() -> bool:
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"nvim {self.name} exited with {self.proc.returncode}")
            result = check()
            return bool(await result if inspect.isawaitable(result) else result)

        try:
            await eventually(alive_and_true, timeout=timeout, what=f"{self.name}: {what}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{await self.diagnostics()}") from None

    async def wait_statusline(
        self, text: str, timeout: float = SYNC_TIMEOUT, *, exact: bool = False
    ) -> None:
        async def shows() -> bool:
            line = await self.statusline()
            return line == text if exact else text in line

        await self.wait(f"{text!r} in the statusline", shows, timeout)

    async def wait_connected(self, room: str) -> None:
        """Until the statusline shows the room ("solo" in solo mode) as connected."""
        await self.wait_statusline(f"● {room}", CONNECT_TIMEOUT)
