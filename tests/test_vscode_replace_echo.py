"""A teammate's replacement reaches the real VS Code once (found by tests/editor_fuzz.py).

VS Code (code-server 4.100.3, VS Code 1.100.3, with the extension, joined from an invite link)
reports an edit it applies as the smallest changes that make it, last first, in one
``didChange``. huddle lsp took the first of them for the user's typing under the edit and sent
it to the room, so every editor got part of the new text twice: ``<i4>ß`` replaced by
``<y41>`` became ``<y41>1`` (in the fuzzer ``<p199>`` and ``<p25p5>``, from Huddle's Neovim
plugin and the Node client alike). Deterministic: VS Code is idle, a Node Yjs teammate makes
one replacement. Before the fix the second case failed (the first, reported as one change,
passed, and stays as a guard); the bridge-level form of a trace is
tests/test_bridge_vscode_minimal_echo.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from huddle.server.hub import Hub
from tests.editor_fuzz import Config, Edit, Fuzz


@pytest.mark.timeout(300)
async def test_a_replacement_reaches_vscode_once(hub: Hub, data_dir: Path, tmp_path: Path) -> None:
    config = Config(vscode=True, emacs=False, nvim_versions=(), plugin_version="")
    fuzz = Fuzz(hub, data_dir, tmp_path, config)
    async with fuzz:
        await fuzz.start()  # VS Code and the Node client, in one room, agreeing
        node = fuzz.node()
        # One after the other, VS Code idle before each: one workbench for both cases.
        for old, new in [("<i2>", "<y29>"), ("<i4>ß", "<y41>")]:
            text, _ = await node.view()
            at = text.index(old)
            edit = Edit("replace", at, at + len(old), new)
            assert await node.apply(text, text, edit)
            expected = text[:at] + new + text[at + len(old) :]
            await fuzz.wait(f"the replacement of {old} everywhere", fuzz.agreed, 60)
            assert fuzz.hub_text() == expected
            # And nothing after it: one more marker, and everyone holds exactly that.
            final = await fuzz.barrier(node, "the barrier", 30)
            assert final.count(new) == 1, (old, new, final)
        counters = await fuzz.peers[0].counters()
        assert counters["repairs"] == 0
