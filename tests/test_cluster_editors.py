"""Editors spread over a hub cluster: two scripted LSP editors (VS Code's and Neovim's ways of
reporting) and a headless Neovim with the plugin, each running its own `huddle lsp` given all
three nodes in a different order, plus a stock Yjs client. A node is SIGKILLed while everyone
types: its editors move to a live node and merge what they typed meanwhile; every token ends up
exactly once in every editor, the Yjs client and the database."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from tests.nvim_plugin.editor import ROOT
from tests.nvim_plugin.editor import Editor as NvimEditor
from tests.support.cluster import HubCluster, stored_texts
from tests.support.lsp_editor import Editor
from tests.support.peers import NodeClient, eventually

ROOM = "team/cluster-editors"
FILE = "notes.md"
TOKEN = re.compile(r"<[a-z]+\d+>")
NVIM = "0.12"


def options(cluster: HubCluster, user: str, order: list[int]) -> dict[str, Any]:
    hubs = [cluster.nodes[i].url for i in order]
    return {"hub": hubs, "room": ROOM, "user": user, "token": cluster.token(ROOM, user)}


def status_hub(editor: Editor) -> str | None:
    notes = editor.notifications.get("huddle/status", [])
    return notes[-1].hub if notes else None


@pytest.mark.timeout(180)
async def test_editors_on_three_nodes_survive_a_node_killed_mid_typing(
    pg_url: str, tmp_path: Path
) -> None:
    if not (ROOT / ".cache" / "neovim" / NVIM / "nvim").exists():
        pytest.fail(f"Neovim {NVIM} is not installed: run scripts/neovim.sh install")
    async with HubCluster(pg_url, tmp_path, 3) as cluster:
        (tmp_path / "ann").mkdir()
        (tmp_path / "bob").mkdir()
        amy = NvimEditor("amy", NVIM, tmp_path)
        try:
            async with (
                Editor(tmp_path / "ann", init_options=options(cluster, "ann", [0, 1, 2])) as ann,
                Editor(
                    tmp_path / "bob",
                    style="neovim",
                    init_options=options(cluster, "bob", [1, 2, 0]),
                ) as bob,
                NodeClient(cluster.nodes[2].url, ROOM, cluster.token(ROOM, "yjs")) as yjs,
            ):
                await amy.start()
                amy_options = options(cluster, "amy", [2, 0, 1])
                await amy.setup(**amy_options, cmd=amy.lsp_cmd())
                for editor in (ann, bob):
                    await editor.wait_status("connected")
                assert status_hub(ann) == cluster.nodes[0].url
                assert status_hub(bob) == cluster.nodes[1].url
                start = "# notes\n"
                ann.open(FILE, start)
                bob.open(FILE, start)
                amy.write(FILE, start)
                await amy.nvim.command(f"edit {FILE}")
                await amy.wait_connected(ROOM)
                await yjs.wait_event("synced")

                async def everyone_has(text_in: str) -> bool:
                    texts = [
                        ann.text(FILE),
                        bob.text(FILE),
                        "\n".join(await amy.lines()) + "\n",
                        (await yjs.files()).get(FILE, ""),
                    ]
                    return all(text_in in t for t in texts)

                await eventually(lambda: everyone_has(start), what="the file everywhere")
                typed = await _type_and_kill(cluster, ann, bob, amy)
                try:
                    await eventually(
                        lambda: _all_equal_with(ann, bob, amy, yjs, typed),
                        timeout=60,
                        what="every token in every editor",
                    )
                except AssertionError:
                    print(cluster.logs())
                    print("typed", typed)
                    print("ann", repr(ann.text(FILE)))
                    print("bob", repr(bob.text(FILE)))
                    print("amy", repr("\n".join(await amy.lines())))
                    print("yjs", repr((await yjs.files()).get(FILE)))
                    print(amy.lsp_log.read_text()[-3000:])
                    raise
                assert status_hub(ann) != cluster.nodes[0].url  # ann moved off the dead node
                text = ann.text(FILE)
                assert sorted(TOKEN.findall(text)) == sorted(typed), "lost or duplicated"
                assert stored_texts(pg_url, ROOM) == {FILE: text}
        finally:
            await amy.stop()


async def _type_and_kill(
    cluster: HubCluster, ann: Editor, bob: Editor, amy: NvimEditor
) -> list[str]:
    """Everyone types tokens at the end of their own line; node 0 (ann's) dies halfway."""
    typed: list[str] = []
    ann.type(FILE, len(ann.text(FILE)), "ann:\n")
    bob.type(FILE, 0, "bob:\n")
    await amy.lua("vim.api.nvim_buf_set_lines(0, -1, -1, false, { 'amy:' })")

    async def ann_types(count: int) -> None:
        for _ in range(count):
            word = f"<ann{len(typed)}>"
            typed.append(word)
            text = ann.text(FILE)
            ann.type(FILE, text.index("ann:") + len("ann:"), word)
            await asyncio.sleep(0.02)  # a typist's pace, not a wait for anything

    async def bob_types(count: int) -> None:
        for _ in range(count):
            word = f"<bob{len(typed)}>"
            typed.append(word)
            bob.type(FILE, len("bob:"), word)
            await asyncio.sleep(0.03)

    async def amy_types(count: int) -> None:
        for _ in range(count):
            word = f"<amy{len(typed)}>"
            typed.append(word)
            assert await amy.lua(_AMY_TYPES, word), "amy's line is gone"
            await asyncio.sleep(0.05)

    async def kill_halfway() -> None:
        while len(typed) < 30:
            await asyncio.sleep(0.01)  # polls the typists' counter: the kill comes mid-typing
        await cluster.nodes[0].kill()

    await asyncio.gather(ann_types(30), bob_types(20), amy_types(12), kill_halfway())
    await ann.flush()
    await bob.flush()
    return typed


# At the end of the line holding "amy:", through the buffer API: Neovim reports it to its
# language server as it does typing (nvim_buf_attach's on_lines).
_AMY_TYPES = """
local word = ...
for i, line in ipairs(vim.api.nvim_buf_get_lines(0, 0, -1, false)) do
  if line:find("amy:", 1, true) then
    vim.api.nvim_buf_set_text(0, i - 1, #line, i - 1, #line, { word })
    return true
  end
end
return false
"""


async def _all_equal_with(
    ann: Editor, bob: Editor, amy: NvimEditor, yjs: NodeClient, typed: list[str]
) -> bool:
    texts = [
        ann.text(FILE),
        bob.text(FILE),
        "\n".join(await amy.lines()) + "\n",
        (await yjs.files()).get(FILE, ""),
    ]
    return len(set(texts)) == 1 and all(word in texts[0] for word in typed)
