"""The real-editor fuzzer's short form (tests/editor_fuzz.py has the editors, the edits and the
checks): Emacs, Neovim 0.7, 0.10 and 0.12 with plain LSP, Neovim 0.12 with the plugin, VS Code
in code-server and a Node Yjs client edit one file at once, at its edges, for a few seconds.

A new seed every run (HUDDLE_FUZZ_SEED=N repeats one; the seed picks an LF or a CRLF file). A
failure names the seed, every editor's text and a diff from the hub's; each editor's language
server log and every edit each editor made (edits.json) stay under the test's tmp_path. The
long form: ``python -m tests.editor_fuzz --seconds 300``.

A run takes 30-45 s alone (13-23 s start everything, 12 s edit), up to 85 s beside the whole
suite on two cores.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from huddle.server.hub import Hub
from tests.editor_fuzz import Config, Fuzz
from tests.test_neovim_e2e import neovim_installed

__all__ = ["neovim_installed"]  # the fixture, shared

SECONDS = 12.0


@pytest.mark.timeout(240)
async def test_every_editor_in_one_room_at_the_edges(
    neovim_installed: None, hub: Hub, data_dir: Path, tmp_path: Path
) -> None:
    seed = int(os.environ.get("HUDDLE_FUZZ_SEED") or random.randrange(1 << 31))
    crlf = seed % 2 == 1
    config = Config(seconds=SECONDS, seed=seed, crlf=crlf)
    print(f"editor fuzz: seed {seed} (HUDDLE_FUZZ_SEED={seed} repeats it), logs in {tmp_path}")
    figures = await Fuzz(hub, data_dir, tmp_path, config).run()
    print(figures)
    assert figures["repairs"] == 0
    assert all(e["edits"] > 0 for e in figures["editors"].values()), figures["editors"]
