"""The `huddle` command line: invite, rooms, and clear errors for bad arguments."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from pycrdt import Doc, Text

from huddle.collab.schema import files
from huddle.server.auth import KEY_FILE, Role, TokenSigner
from huddle.server.config import HubConfig
from huddle.server.errors import AuthError
from huddle.server.hub import Hub
from huddle.server.store import Database, Pending


def huddle(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "huddle.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_invite_prints_a_working_token_and_join_link(tmp_path: Path) -> None:
    result = huddle(
        "invite",
        "acme/web",
        "--user",
        "zoë",
        "--role",
        "read",
        "--ttl",
        "2h",
        "--data-dir",
        str(tmp_path),
        "--url",
        "wss://hub.example.test:443",
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.strip().splitlines())
    tok, link = lines["token"].strip(), lines["join"].strip()
    grant = TokenSigner.for_data_dir(tmp_path).verify(tok, "acme/web")
    assert (grant.user, grant.role) == ("zoë", Role.READ)
    remaining = grant.expires_at.timestamp() - time.time()
    assert timedelta(hours=2).total_seconds() - 60 < remaining <= timedelta(hours=2).total_seconds()
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("wss", "hub.example.test:443", "/acme/web")
    assert parse_qs(parts.query)["token"] == [tok]
    # The same invite for a browser: the token in the fragment, which browsers never send.
    page = urlsplit(lines["open in a browser"].strip())
    assert (page.scheme, page.netloc, page.path, page.query) == (
        "https",
        "hub.example.test:443",
        "/acme/web",
        "",
    )
    assert parse_qs(page.fragment)["token"] == [tok]


async def test_invite_names_the_running_hubs_address(hub: Hub, data_dir: Path) -> None:
    """The hub runs on another port than the default: the link names where it listens."""
    assert hub.port != HubConfig().port
    result = await asyncio.to_thread(
        huddle, "invite", "r", "--user", "bob", "--data-dir", str(data_dir)
    )
    assert result.returncode == 0, result.stderr
    link = result.stdout.split("join:", 1)[1].split()[0]
    assert urlsplit(link).netloc == f"127.0.0.1:{hub.port}", link
    assert result.stderr == ""


def test_invite_without_a_running_hub_says_the_link_is_a_guess(tmp_path: Path) -> None:
    result = huddle("invite", "r", "--user", "bob", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "no hub is running" in result.stderr and "--url" in result.stderr, result.stderr
    assert "join:  ws://" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["invite", "r", "--user", "a", "--ttl", "5x"], "invalid ttl"),
        (["invite", "r", "--user", "a", "--ttl", "999999999999w"], "invalid ttl"),
        (["invite", "r", "--user", "a", "--role", "admin"], "invalid choice"),
        (["invite", "../etc", "--user", "a"], "invalid room name"),
        (["invite", "r"], "--user"),
        (["invite", "r", "--user", "ann\nINFO forged"], "invalid user name"),
        (["invite", "r", "--user", "ann\u202e"], "invalid user name"),
        (["invite", "r", "--user", "ann/bob"], "invalid user name"),
        (["invite", "r", "--user", ""], "invalid user name"),
        (["keys"], "rotate"),
        (["serve", "--port", "99999"], "port"),
        (["serve", "--tls-cert", "c.pem"], "tls_cert and tls_key must be given together"),
        (["serve", "--llm-url", "http://gpu:8000"], "--llm-url needs --llm-model"),
        (["serve", "--llm-url", "ftp://gpu", "--llm-model", "m"], "http:// or https://"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_fail_clearly(tmp_path: Path, args: list[str], message: str) -> None:
    result = (
        huddle(*args, "--data-dir", str(tmp_path)) if args[0] != "frobnicate" else huddle(*args)
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_rooms_lists_files_and_sizes(tmp_path: Path) -> None:
    doc = Doc()
    files(doc)["a.py"] = Text("print('é')\n")
    files(doc)["b/c.md"] = Text("# hi\n")
    db = Database.in_dir(tmp_path)
    record = db.load_room("team/one", create=True)
    assert record is not None
    db.append([Pending(None, record.room_id, 1, "ann", doc.get_update())])  # type: ignore[arg-type]
    db.close()
    result = huddle("rooms", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("team/one"))
    assert row.split()[1:3] == ["2", str(len("print('é')\n".encode()) + len("# hi\n"))]


def test_keys_rotate_replaces_the_key_and_revokes_old_tokens(tmp_path: Path) -> None:
    old = TokenSigner.for_data_dir(tmp_path)
    before = old.issue("r", "ann", Role.EDIT, timedelta(hours=1))
    result = huddle("keys", "rotate", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "revoked" in result.stdout
    key = tmp_path / KEY_FILE
    assert oct(key.stat().st_mode & 0o777) == oct(0o600)
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temporary file left
    new = TokenSigner.for_data_dir(tmp_path)
    assert new.key_id != old.key_id
    with pytest.raises(AuthError, match="signature is invalid"):
        new.verify(before, "r")
