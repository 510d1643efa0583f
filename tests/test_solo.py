"""Solo mode on one machine: a store per workspace folder, one hub per store, and a private data
directory. Real ``huddle lsp`` processes driven by the scripted editor."""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as lsp

from huddle.lsp.session import solo_dir
from huddle.server.config import HubConfig
from huddle.server.datadir import DataDirBusy
from huddle.server.hub import Hub
from huddle.server.store import Database
from tests.support.hubs import local_hub
from tests.support.lsp_editor import Editor
from tests.support.peers import eventually


def solo_env(data_home: Path) -> dict[str, str]:
    return {"XDG_DATA_HOME": str(data_home), "HUDDLE_HUB_URL": "", "HUDDLE_TOKEN": ""}


async def status(editor: Editor) -> Any:
    return await editor.client.workspace_execute_command_async(
        lsp.ExecuteCommandParams(command="huddle.status")
    )


def journal_text(data_dir: Path, room: str) -> bytes:
    db = Database.in_dir(data_dir)
    try:
        return b"".join(e.update for e in db.journal(room))
    finally:
        db.close()


async def test_two_projects_with_one_folder_name_never_share_a_room(tmp_path: Path) -> None:
    data_home = tmp_path / "data"
    first, second = tmp_path / "work" / "app", tmp_path / "forks" / "app"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    env = solo_env(data_home)
    async with Editor(first, env=env) as one, Editor(second, env=env) as two:
        await one.wait_status("connected")
        await two.wait_status("connected")
        one.open("main.py", "print('first project')\n")
        two.open("main.py", "print('second project')\n")
        await one.flush()
        await two.flush()
        first_status, second_status = await status(one), await status(two)
        assert first_status["room"] == second_status["room"] == "app"
        assert first_status["hub"] != second_status["hub"]
        base = data_home / "huddle" / "solo"
        stores = (solo_dir(base, first), solo_dir(base, second))
        assert stores[0] != stores[1]

        def stored() -> bool:
            return all((d / "huddle.sqlite3").exists() for d in stores) and (
                b"first project" in journal_text(stores[0], "app")
                and b"second project" in journal_text(stores[1], "app")
            )

        await eventually(stored, what="each project's file in its own store")
        assert b"second" not in journal_text(stores[0], "app")
        assert b"first" not in journal_text(stores[1], "app")
        # each editor's buffer is its own file, untouched by the other project
        assert one.text("main.py") == "print('first project')\n"
        assert two.text("main.py") == "print('second project')\n"


async def test_editors_of_one_workspace_share_one_hub_and_it_moves_when_its_owner_leaves(
    tmp_path: Path,
) -> None:
    data_home, root = tmp_path / "data", tmp_path / "project"
    root.mkdir()
    env = solo_env(data_home)
    store = solo_dir(data_home / "huddle" / "solo", root)
    async with Editor(root, env=env) as ann:
        await ann.wait_status("connected")
        ann.open("main.py", "x = 1\n")
        owner = (await status(ann))["hub"]
        async with Editor(root, env=env) as bob:
            await bob.wait_status("connected")
            assert (await status(bob))["hub"] == owner  # one hub: one writer of the store
            bob.open("main.py", "x = 1\n")
            bob.type("main.py", 0, "# bob\n")
            await eventually(lambda: ann.text("main.py").startswith("# bob\n"), what="bob's line")
            ann.type("main.py", 0, "# ann\n")
            await eventually(
                lambda: bob.text("main.py") == "# ann\n# bob\nx = 1\n", what="ann's line"
            )

    def stored_once() -> bool:
        log = journal_text(store, "project")
        return log.count(b"# ann") == 1 and log.count(b"# bob") == 1

    await eventually(stored_once, what="each line stored once, by one writer")


async def test_the_hub_that_leaves_hands_the_store_to_the_editor_that_stays(
    tmp_path: Path,
) -> None:
    data_home, root = tmp_path / "data", tmp_path / "project"
    root.mkdir()
    env = solo_env(data_home)
    bob = Editor(root, env=env)
    async with Editor(root, env=env) as ann:
        await ann.wait_status("connected")
        ann.open("main.py", "x = 1\n")
        owner = (await status(ann))["hub"]
        await bob.__aenter__()
        await bob.wait_status("connected")
        assert (await status(bob))["hub"] == owner
        bob.open("main.py", "x = 1\n")
        await eventually(lambda: bob.text("main.py") == "x = 1\n", what="bob synced")
    try:  # ann's editor closed, and her huddle lsp with the hub in it: bob's takes over
        await eventually(
            lambda: (
                (bob.notifications["huddle/status"][-1].hub or owner) != owner
                and bob.notifications["huddle/status"][-1].state == "connected"
            ),
            what="bob's huddle lsp running the hub",
        )
        bob.type("main.py", 0, "# after\n")
        store = solo_dir(data_home / "huddle" / "solo", root)
        await eventually(
            lambda: b"# after" in journal_text(store, "project"), what="bob's edit stored"
        )
    finally:
        await bob.__aexit__(None, None, None)


async def test_a_second_hub_on_one_data_dir_is_refused(tmp_path: Path) -> None:
    config = HubConfig(port=0, data_dir=tmp_path / "hub")
    async with Hub(config) as first:
        with pytest.raises(DataDirBusy) as busy:
            async with Hub(config):
                pass
        assert busy.value.owner is not None and busy.value.owner.url == first.url
        assert "another hub is using" in str(busy.value)
    async with Hub(config):  # released with the first
        pass


async def test_the_data_dir_is_private_and_a_wide_one_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "new" / "huddle"
    async with local_hub(data_dir) as hub:
        hub.audit.record(room="r", user="ann", kind="summary", files=[])
    for path in (data_dir, data_dir.parent):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    files = [p for p in data_dir.iterdir() if p.is_file()]
    names = {p.name for p in files}
    assert {"hub.key", "huddle.sqlite3", "audit.jsonl"} <= names
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    data_dir.chmod(0o755)
    (data_dir / "huddle.sqlite3").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="huddle.datadir"):
        async with local_hub(data_dir):
            pass
    warned = {r.args[0] for r in caplog.records if r.args}  # type: ignore[index]
    assert {data_dir, data_dir / "huddle.sqlite3"} <= warned
