"""Where `huddle lsp` connects: initializationOptions, then HUDDLE_* env, then huddle.toml."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types as lsp

from huddle.lsp.errors import SettingsError
from huddle.lsp.ignore import ShareRules
from huddle.lsp.session import solo_dir
from huddle.lsp.settings import resolve
from huddle.server.store import Database
from tests.support.lsp_editor import Editor
from tests.support.peers import eventually


def test_first_match_wins_field_by_field(tmp_path: Path) -> None:
    (tmp_path / "huddle.toml").write_text(
        '[huddle]\nhub = "ws://toml:1"\nroom = "toml-room"\nuser = "toml-user"\ncolor = "#123456"\n'
    )
    env = {"HUDDLE_HUB_URL": "wss://env:2", "HUDDLE_USER": "env-user"}
    settings = resolve({"user": "init-user"}, tmp_path, env)
    assert (settings.hub, settings.room, settings.user, settings.color) == (
        "wss://env:2",
        "toml-room",
        "init-user",
        "#123456",
    )
    assert "token" not in repr(resolve({"token": "s3cret"}, tmp_path, {}))


def test_defaults_and_solo(tmp_path: Path) -> None:
    settings = resolve(None, tmp_path, {})
    assert settings.solo and settings.room == tmp_path.name and settings.user


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"hub": "http://x"}, "hub"),
        ({"color": "red"}, "color"),
        ({"nope": 1}, "nope"),
        ([1], "object"),
    ],
)
def test_malformed_settings_name_the_field(tmp_path: Path, options: object, field: str) -> None:
    with pytest.raises(SettingsError, match=field):
        resolve(options, tmp_path, {})


def test_broken_toml_is_reported(tmp_path: Path) -> None:
    (tmp_path / "huddle.toml").write_text("hub = [unclosed")
    with pytest.raises(SettingsError, match=r"huddle\.toml"):
        resolve(None, tmp_path, {})


def test_share_rules(tmp_path: Path) -> None:
    (tmp_path / ".huddleignore").write_text("generated/\n!generated/keep.py\n")
    rules = ShareRules(tmp_path)
    assert rules.relative(tmp_path / "src" / "app.py") == "src/app.py"
    for secret in (".env", ".env.local", "a/b/server.key", "id_rsa", "cert.pem", "generated/x.py"):
        assert rules.relative(tmp_path / secret) is None, secret
    assert rules.relative(tmp_path / "generated" / "keep.py") == "generated/keep.py"
    assert rules.relative(tmp_path.parent / "outside.py") is None
    (tmp_path / "link").symlink_to(tmp_path.parent)
    assert rules.relative(tmp_path / "link" / "escape.py") is None


async def test_solo_mode_runs_a_private_hub(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    data_home = tmp_path / "data"
    env = {"XDG_DATA_HOME": str(data_home), "HUDDLE_HUB_URL": "", "HUDDLE_TOKEN": ""}
    async with Editor(root, env=env) as me:
        await me.wait_status("connected")
        me.open("main.py", "print('solo')\n")
        me.type("main.py", 0, "# mine\n")
        status = await me.client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command="huddle.status")
        )
        assert status["solo"] is True and status["room"] == "project"
        assert status["hub"].startswith("ws://127.0.0.1:")

        def stored() -> bool:
            db_dir = solo_dir(data_home / "huddle" / "solo", root)
            if not (db_dir / "huddle.sqlite3").exists():
                return False
            db = Database.in_dir(db_dir)
            try:
                return any(b"mine" in e.update for e in db.journal("project"))
            finally:
                db.close()

        await eventually(stored, what="the solo hub stores the edit in the user's data dir")
