"""The headless Neovim versions the editor tests run against, installed by scripts/neovim.sh.

0.7 comes from Debian bookworm, 0.10 from trixie and 0.12 from sid, each in a private prefix
under .cache/neovim/VERSION with a launcher script. Installing is idempotent and cached, so the
session fixture below only downloads on a fresh machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "neovim.sh"
VERSIONS = {"0.7": 7, "0.10": 10, "0.12": 12}

# A fresh install downloads about 30 MB and takes well under a minute; allow for slow mirrors.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="session")
def neovim_installed() -> None:
    cached = all((ROOT / ".cache" / "neovim" / v / "nvim").exists() for v in VERSIONS)
    if not cached and (shutil.which("apt-get") is None or shutil.which("dpkg") is None):
        pytest.skip("installing Neovim needs apt-get and dpkg (Debian)")
    result = subprocess.run(
        [str(SCRIPT), "install"],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert result.returncode == 0, f"scripts/neovim.sh install failed:\n{result.stderr}"


@pytest.fixture(scope="session")
def nvim_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Keep Neovim away from the user's configuration, state and logs."""
    home = tmp_path_factory.mktemp("nvim-home")
    env = dict(os.environ)
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env[name] = str(home / name.lower())
    env.pop("NVIM", None)
    env.pop("NVIM_APPNAME", None)
    return env


def launcher(version: str) -> Path:
    result = subprocess.run(
        [str(SCRIPT), "path", version],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


def run_nvim(version: str, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [str(launcher(version)), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, f"nvim {version} exited {result.returncode}:\n{result.stderr}"
    return result.stdout


def run_lua(version: str, env: dict[str, str], expression: str) -> str:
    """Evaluate a Lua expression in a clean headless Neovim and return what it printed."""
    command = f'lua io.stdout:write(tostring({expression}) .. "\\n")'
    return run_nvim(version, env, "--headless", "--clean", "-c", command, "-c", "qa!").strip()


@pytest.mark.parametrize("version", VERSIONS)
def test_launcher_installed(neovim_installed: None, version: str) -> None:
    path = launcher(version)
    assert path == ROOT / ".cache" / "neovim" / version / "nvim"
    assert path.is_file()
    assert os.access(path, os.X_OK)


@pytest.mark.parametrize(("version", "minor"), VERSIONS.items())
def test_version(
    neovim_installed: None, nvim_env: dict[str, str], version: str, minor: int
) -> None:
    first_line = run_nvim(version, nvim_env, "--headless", "--version").splitlines()[0]
    match = re.fullmatch(r"NVIM v0\.(\d+)\.\d+\S*", first_line)
    assert match is not None, first_line
    assert int(match.group(1)) == minor


@pytest.mark.parametrize(("version", "minor"), VERSIONS.items())
def test_headless_lua(
    neovim_installed: None, nvim_env: dict[str, str], version: str, minor: int
) -> None:
    assert run_lua(version, nvim_env, "vim.version().minor") == str(minor)
    # The runtime is the prefix's own, not whatever the machine may have.
    runtime = Path(run_lua(version, nvim_env, "vim.env.VIMRUNTIME"))
    assert runtime == ROOT / ".cache" / "neovim" / version / "usr" / "share" / "nvim" / "runtime"
    # Child processes run with the system's libraries.
    assert run_lua(version, nvim_env, 'vim.fn.system({"echo", "child"})') == "child"


@pytest.mark.parametrize("version", ["0.10", "0.12"])
def test_bundled_treesitter_parsers(
    neovim_installed: None, nvim_env: dict[str, str], version: str
) -> None:
    expression = 'vim.treesitter.get_string_parser("local x = 1", "lua"):parse()[1]:root():type()'
    assert run_lua(version, nvim_env, expression) == "chunk"


def test_inline_completion_in_0_12(neovim_installed: None, nvim_env: dict[str, str]) -> None:
    assert run_lua("0.12", nvim_env, "vim.lsp.inline_completion ~= nil") == "true"
    assert run_lua("0.10", nvim_env, "vim.lsp.inline_completion ~= nil") == "false"
