"""Soak: simulated users (real language servers and Node Yjs clients) type into shared files
and ask for completions through a real hub for a while; then every replica agrees, nothing
typed is lost or doubled, memory is flat and the logs are clean.

Short by default (6 users: 4 editors and 2 Node clients, 3 files, 60 s, 2 edits a second each);
HUDDLE_SOAK_MINUTES=10 runs the long form (20 users, 5 files, 1 edit a second each;
HUDDLE_SOAK_USERS / HUDDLE_SOAK_FILES / HUDDLE_SOAK_EDITS_PER_S override), as does
``python -m tests.support.soak --minutes 10``. Completions come from a replay backend
(tests.support.replay)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.soak import Soak, SoakConfig

CONFIG = SoakConfig.from_env(users=6, files=3, seconds=60)


@pytest.mark.timeout(CONFIG.seconds + 240)
async def test_soak_converges_with_flat_memory_and_clean_logs(tmp_path: Path) -> None:
    async with Soak(tmp_path, CONFIG) as soak:
        await soak.join()
        await soak.run(CONFIG.seconds)
        final = await soak.settle(timeout=60)
        totals = soak.totals()
        print(json.dumps({"rss": soak.rss_table(), **totals}, ensure_ascii=False))
        assert totals["typed"] > CONFIG.users * CONFIG.seconds  # the load really ran
        assert await soak.repairs() == {u.name: 0 for u in soak.lsp_users}
        soak.check_memory()
        await soak.check_store(final)
    # No completion may fail here (the backend is healthy): nothing allowed in the logs.
    assert soak.bad_log_lines(allow=()) == {}
    completions = totals["completions"]
    assert completions["ok"] > 0 and completions["hung"] == 0, completions
    failed = [f for u in soak.lsp_users for f in u.stats.failed]
    assert not failed, failed
