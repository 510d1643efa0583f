"""A real VS Code workbench for tests: code-server 4.100.3 (VS Code 1.100.3) on 127.0.0.1 with a
private user-data-dir, and one headless Debian chromium page of it driven by playwright-core
(tests/workbench/page.mjs) over JSON lines. Used by tests/test_vscode_workbench.py and the
real-editor fuzzer.

Installed by ``scripts/vscode-server.sh install`` (``./dev setup`` and ``./dev test`` run it);
when something is missing, ``require_installed`` fails naming it, it never skips.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.support.peers import ROOT, eventually, free_port

WORKBENCH = ROOT / "tests" / "workbench"
CODE_SERVER = WORKBENCH / "node_modules" / ".bin" / "code-server"
PAGE = WORKBENCH / "page.mjs"
CHROMIUM = Path("/usr/bin/chromium")
VSCODE = ROOT / "editor-clients" / "vscode"
# A workbench without distractions: no telemetry, no trust prompt, no welcome page, and nothing
# that turns typed text into something else (suggestions, auto-closing, ghost text).
SETTINGS = {
    "telemetry.telemetryLevel": "off",
    "security.workspace.trust.enabled": False,
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": False,
    "workbench.enableExperiments": False,
    "extensions.autoUpdate": False,
    "extensions.autoCheckUpdates": False,
    "update.mode": "none",
    "editor.quickSuggestions": {"other": "off", "comments": "off", "strings": "off"},
    "editor.suggestOnTriggerCharacters": False,
    "editor.acceptSuggestionOnEnter": "off",
    "editor.autoClosingBrackets": "never",
    "editor.autoClosingQuotes": "never",
    "editor.autoIndent": "none",
    # Paste as a plain paste, at once: with paste-as, VS Code computes the paste's edits
    # asynchronously and drops them if the text changes meanwhile (the fuzzer's Enter after a
    # pasted token; tests/workbench/page.mjs fuzzEdit).
    "editor.pasteAs.enabled": False,
    "editor.inlineSuggest.enabled": False,
    "editor.minimap.enabled": False,
    "files.autoSave": "off",
    "chat.commandCenter.enabled": False,
}


def require_installed() -> None:
    missing = [str(p) for p in (CODE_SERVER, CHROMIUM) if not p.exists()]
    if not (WORKBENCH / "node_modules" / "playwright-core").is_dir():
        missing.append("tests/workbench/node_modules/playwright-core")
    if missing:
        raise AssertionError(
            f"the VS Code workbench is not installed ({', '.join(missing)} missing): "
            "run scripts/vscode-server.sh install (./dev setup does)"
        )


def build_vsix() -> Path:
    done = subprocess.run(
        ["npm", "run", "--silent", "vsix"], cwd=VSCODE, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise AssertionError(f"npm run vsix failed:\n{done.stdout}\n{done.stderr}")
    vsix = sorted((VSCODE / "dist").glob("*.vsix"), key=lambda p: p.stat().st_mtime)
    assert vsix, "npm run vsix wrote no .vsix to editor-clients/vscode/dist"
    return vsix[-1]


def path_without_huddle() -> str:
    """PATH as a user without Huddle installed has it: the extension must not find it by luck."""
    keep = [
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not (Path(d) / "huddle").exists()
    ]
    return os.pathsep.join(keep)


class Page:
    """tests/workbench/page.mjs: one chromium page of the workbench, driven over JSON lines."""

    _ids = itertools.count(1)

    def __init__(self, url: str) -> None:
        self.url = url
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}

    async def __aenter__(self) -> Page:
        self.proc = await asyncio.create_subprocess_exec(
            "node",
            str(PAGE),
            self.url,
            str(CHROMIUM),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if b"ready" not in line:
            err = await self.proc.stderr.read() if self.proc.stderr else b""
            raise AssertionError(f"chromium did not start: {line!r} {err.decode(errors='replace')}")
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            msg = json.loads(raw)
            if "id" in msg:
                self._replies.pop(msg["id"]).set_result(msg)

    async def request(self, op: str, timeout: float | None = None, **args: Any) -> dict[str, Any]:
        """Run ``op``; ``timeout`` (seconds) bounds its wait in the page (the op's own default
        otherwise), and this side waits a little longer so that the page's error, which says
        what was missing, is the one reported."""
        assert self.proc.stdin is not None
        msg_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[msg_id] = future
        if timeout is not None:
            args["timeout"] = timeout * 1000
        self.proc.stdin.write(json.dumps({"id": msg_id, "op": op, **args}).encode() + b"\n")
        await self.proc.stdin.drain()
        reply = await asyncio.wait_for(future, 180 if timeout is None else timeout + 30)
        if not reply["ok"]:
            raise AssertionError(f"workbench {op} failed: {reply['error']}")
        return reply


class CodeServer:
    """code-server on 127.0.0.1 with a private user-data-dir and extensions-dir."""

    def __init__(self, home: Path, vsix: Path) -> None:
        self.home = home
        self.user_data = home / "user-data"
        self.extensions = home / "extensions"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "code-server.log"
        settings = self.user_data / "User" / "settings.json"
        settings.parent.mkdir(parents=True)
        settings.write_text(json.dumps(SETTINGS, indent=2))
        self.env = {
            **os.environ,
            "PATH": path_without_huddle(),
            # Without it code-server rebuilds the extension host's PATH from a login shell.
            "VSCODE_CLI": "1",
            "HOME": str(home),
        }
        self.env.pop("VIRTUAL_ENV", None)
        self.vsix = vsix

    def _cli(self, *args: str) -> list[str]:
        return [
            str(CODE_SERVER),
            "--user-data-dir",
            str(self.user_data),
            "--extensions-dir",
            str(self.extensions),
            *args,
        ]

    async def __aenter__(self) -> CodeServer:
        done = subprocess.run(
            self._cli("--install-extension", str(self.vsix)),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0 or "successfully installed" not in done.stdout:
            raise AssertionError(
                f"code-server --install-extension failed:\n{done.stdout}\n{done.stderr}"
            )
        self._log = self.log_path.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            *self._cli(
                "--bind-addr",
                f"127.0.0.1:{self.port}",
                "--auth",
                "none",
                "--disable-telemetry",
                "--disable-update-check",
                "--disable-workspace-trust",
                "--disable-getting-started-override",
            ),
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        await eventually(
            lambda: "HTTP server listening" in self.log() or self.proc.returncode is not None,
            timeout=60,
            what="code-server to listen",
        )
        assert self.proc.returncode is None, f"code-server exited:\n{self.log()}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def extension_log(self) -> str:
        """The Huddle output channel, as the extension host wrote it."""
        logs = sorted((self.user_data / "logs").glob("*/**/*Huddle.log"))
        return "\n".join(p.read_text(errors="replace") for p in logs)
