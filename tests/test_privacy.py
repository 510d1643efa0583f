"""Private files (issue 12, item 6): a room's `.huddleignore` cannot re-include the built-in
secrets (`!.env`, `!id_*`), and odd spellings of a secret's path (`.ENV`, `.env ` with a
trailing space, `config\\.env`) are secrets too. Attacked at the hub (a Yjs client puts them in
the room; summaries, completions and the audit log must not carry them) and at `huddle lsp`
(a workspace `.huddleignore` cannot make it share them)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pycrdt import Text

from huddle.collab import schema
from huddle.collab.privacy import PathRules, normalise
from huddle.llm import BackendConfig, LlmConfig, LlmTimeouts
from huddle.lsp.hub_client import HubClient
from huddle.lsp.ignore import ShareRules
from huddle.protocol import RpcError
from huddle.server.hub import Hub
from tests.conftest import AI_MODEL
from tests.support.hubs import local_hub
from tests.support.lsp_editor import Editor
from tests.support.peers import eventually, token
from tests.support.replay import FakeBackend, streaming

ROOM = "privacy/room"
REINCLUDE = "!.env\n!id_*\n!*.pem\n"
# Each holds a marker that must never reach a model.
SECRETS = {
    ".env": "TOKEN=hunter2-dotenv\n",
    ".ENV": "TOKEN=hunter2-upper\n",
    ".env ": "TOKEN=hunter2-space\n",
    "config\\.env": "TOKEN=hunter2-backslash\n",
    "id_rsa": "-----BEGIN OPENSSH PRIVATE KEY----- hunter2-key\n",
}


@pytest.fixture
async def audited_hub(data_dir: Path, backend: FakeBackend) -> AsyncIterator[Hub]:
    """The AI gateway on the replay backend, writing prompts and answers to the audit log."""
    llm = LlmConfig(
        backends=[BackendConfig(url=backend.url, model=AI_MODEL)],
        timeouts=LlmTimeouts(connect_s=1, first_token_s=5, between_chunks_s=5),
        audit_content=True,
    )
    async with local_hub(data_dir, llm=llm) as running:
        yield running


@pytest.mark.parametrize(
    "path",
    [
        *SECRETS,
        ".env.",
        "./.env",
        "src//.env",
        "deploy/.Env.Production",
        "keys/ID_ED25519",
        "certs\\server.PEM",
        ".e\u200bnv",  # a zero-width space inside
        "\uff0eenv",  # a full-width full stop
        ".ssh /config",
    ],
)
def test_secrets_stay_private_whatever_the_room_rules_and_spelling(path: str) -> None:
    assert PathRules.from_ignore_file(REINCLUDE).private(path)
    assert PathRules().private(path)


def test_room_rules_only_add_and_public_files_stay_public() -> None:
    rules = PathRules.from_ignore_file("private/\n*.secret\n")
    assert rules.private("private/plan.txt") and rules.private("Private/plan.txt")
    assert rules.private("notes.SECRET")
    for public in ("main.py", "environment.py", "docs/env.md", "src/identity.py", ".envrc.md"):
        assert not rules.private(public), public
    assert normalise("a\\b /./c../.env ") == "a/b/c/.env"


def test_a_workspace_huddleignore_cannot_make_huddle_lsp_share_a_secret(tmp_path: Path) -> None:
    (tmp_path / ".huddleignore").write_text(REINCLUDE)
    rules = ShareRules(tmp_path)
    for name in (".env", ".ENV", "id_rsa", "server.pem"):
        assert rules.relative(tmp_path / name) is None, name
    assert rules.relative(tmp_path / "main.py") == "main.py"


async def test_secrets_a_client_put_in_the_room_reach_no_prompt_and_no_audit(
    audited_hub: Hub, backend: FakeBackend, data_dir: Path
) -> None:
    """A plain Yjs client (no `huddle lsp` to filter) puts the secrets and a `.huddleignore`
    that re-includes them into the room; a reader then asks for a session summary and for
    completions. The backend records every prompt."""
    backend.handler = streaming("Summary.")
    since = time.time() - 1
    async with (
        HubClient(audited_hub.url, ROOM, token(data_dir, ROOM, "ann")) as ann,
        HubClient(audited_hub.url, ROOM, token(data_dir, ROOM, "rex", role="read")) as rex,
    ):
        await asyncio.wait_for(ann.synced.wait(), 10)
        await asyncio.wait_for(rex.synced.wait(), 10)
        files = schema.files(ann.doc)
        files[".huddleignore"] = Text(REINCLUDE)
        for path, content in SECRETS.items():
            files[path] = Text(content)
        files["main.py"] = Text("import os\nprint(os.environ['TOKEN'])\n")
        await ann.flush()
        room = audited_hub.room(ROOM)
        assert room is not None
        await eventually(lambda: "main.py" in schema.files(room.doc), what="the hub has it")
        # the room holds them: the hub relays the document as a whole (README, privacy)
        await eventually(lambda: set(SECRETS) <= set(schema.files(rex.doc)), what="relayed")

        session = await rex.request("summarize", {"kind": "session", "since": since})
        completion = await rex.request("complete", {"path": "main.py", "cursor": None})
        prompts = [r.json()["prompt"] for r in backend.requests]
        assert len(prompts) == 2 and "main.py" in prompts[0] and "main.py" in prompts[1]
        assert all("hunter2" not in p for p in prompts), prompts
        for path in SECRETS:
            for method, params in (
                ("complete", {"path": path, "cursor": None}),
                ("summarize", {"kind": "file", "path": path}),
            ):
                with pytest.raises(RpcError) as refused:
                    await rex.request(method, params)
                assert refused.value.code == "forbidden", (method, path)

    assert [f["path"] for f in session["files"]] == [".huddleignore", "main.py"]
    assert completion["text"] is not None
    assert len(backend.requests) == 2  # the secrets were refused before any model call
    audit = audited_hub.audit.read()
    assert audit and all("hunter2" not in str(record) for record in audit)
    assert all(not set(SECRETS) & set(record["files"]) for record in audit)


async def test_huddle_lsp_does_not_share_what_a_workspace_huddleignore_re_includes(
    hub: Hub, data_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / ".huddleignore").write_text(REINCLUDE)
    options = {"hub": hub.url, "room": ROOM, "user": "ann", "token": token(data_dir, ROOM, "ann")}
    async with Editor(tmp_path, init_options=options) as editor:
        await editor.wait_status("connected")
        editor.open(".env", SECRETS[".env"])
        editor.open("id_rsa", SECRETS["id_rsa"])
        editor.open("main.py", "print('public')\n")  # shared after them, on the same connection
        await eventually(
            lambda: (room := hub.room(ROOM)) is not None and "main.py" in schema.files(room.doc),
            what="main.py shared",
        )
        room = hub.room(ROOM)
        assert room is not None
        assert sorted(schema.files(room.doc).keys()) == ["main.py"]
