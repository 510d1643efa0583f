"""An editor that reports its changes late is not flooded with edits (issue 13, item 3).

eglot sends ``didChange`` only after 0.5 s without typing and answers a stale versioned
``workspace/applyEdit`` with a JSON-RPC error. While its user types, every edit `huddle lsp`
sends is stale; re-sent at once, that was ~250 requests a second. After a rejected edit the
server now waits for the editor's next change (or a backoff that doubles up to 8 s).

The user types at 8 characters a second (the rhythm of the typing, not a wait for something)
while a stock Yjs teammate edits the same file; the count of applyEdit requests must not
depend on the number of keystrokes, the teammate's edits must arrive, and all must converge.
The figure per minute is printed for each scripted editor style.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from huddle.collab.schema import file_texts
from huddle.server.hub import Hub
from tests.support.lsp_editor import Editor
from tests.support.peers import NodeClient, eventually, token

ROOM = "team/late"
FILE = "main.py"
INITIAL = "def main():\n    pass\n"
KEYSTROKES = 24  # 3 s at 8 characters a second
TEAMMATE_EDITS = 3
# Requests a style may need besides one per teammate edit: the first try of each edit, the
# retries after backoffs (0.5 + 1 + 2 s fit in 3 s of typing) and the final pause.
SLACK = 8


def options(hub: Hub, data_dir: Path, user: str) -> dict[str, str]:
    return {"hub": hub.url, "room": ROOM, "user": user, "token": token(data_dir, ROOM, user)}


async def type_while_teammate_edits(
    hub: Hub, data_dir: Path, tmp_path: Path, style: str
) -> tuple[Editor, float]:
    """Run the scene; returns the editor (with its counters) and the seconds of typing."""
    root = tmp_path / "ws"
    root.mkdir()
    loop = asyncio.get_running_loop()
    async with Editor(root, style=style, init_options=options(hub, data_dir, "eve")) as eve:
        eve.open(FILE, INITIAL)
        await eventually(
            lambda: (
                (room := hub.room(ROOM)) is not None and file_texts(room.doc).get(FILE) == INITIAL
            ),
            what="the file in the room",
        )
        async with NodeClient(hub.url, ROOM, token(data_dir, ROOM, "tom")) as tom:
            await tom.wait_event("synced")
            started = loop.time()
            every = KEYSTROKES // TEAMMATE_EDITS
            for k in range(KEYSTROKES):
                # At the end of the first line, as a user typing a long signature.
                eve.type(FILE, len("def main(") + k, "x")
                if k % every == every // 2:
                    await tom.request("insert", file=FILE, index=0, text=f"#{k}\n")
                await asyncio.sleep(0.125)
            typing = loop.time() - started
            await eve.flush()
            room = hub.room(ROOM)
            assert room is not None

            def converged() -> bool:
                text = file_texts(room.doc).get(FILE)
                return text is not None and eve.text(FILE) == text and text.count("x") == KEYSTROKES

            await eventually(converged, timeout=20, what="the editor and the hub to agree")
            final = file_texts(room.doc)[FILE]
            assert (await tom.files())[FILE] == final
            assert final.count("#") == TEAMMATE_EDITS
            assert "def main(" + "x" * KEYSTROKES + "):" in final
    return eve, typing


@pytest.mark.timeout(60)
@pytest.mark.parametrize("style", ["eglot", "vscode", "neovim"])
async def test_late_reporter_is_not_flooded(
    hub: Hub, data_dir: Path, tmp_path: Path, style: str
) -> None:
    eve, typing = await type_while_teammate_edits(hub, data_dir, tmp_path, style)
    per_minute = eve.requests / typing * 60
    print(
        f"{style}: {eve.requests} applyEdit requests in {typing:.1f} s of typing "
        f"({per_minute:.0f}/min), {eve.rejected} rejected, {eve.applied} applied"
    )
    assert eve.requests <= TEAMMATE_EDITS + SLACK, f"{eve.requests} applyEdit requests"
