"""Real concurrent editing traces replayed through pycrdt replicas as huddle holds them.

``friendsforever`` (2 authors, 26,078 transactions) and ``clownschool`` (3 authors, 23,136
transactions) from ``josephg/editing-traces`` (commit 762fa6c), by Joseph Gentle and
contributors, CC BY 4.0. Each is replayed in full: one replica per author (the room's
``files`` Map of ``Text``), every transaction applied on its author's replica holding exactly
the transactions its ``parents`` name, positions turned from code points into UTF-8 bytes
through a line index that follows the ``Text``'s events. Every replica and a fresh document
that applies every update in trace order must end in ``endContent``. The replay itself lives in
``benchmarks/traces.py``, which times it; the traces are read from ``$HUDDLE_TRACES_DIR``,
``tests/data/editing-traces`` or the workspace's ``../shared/data/editing-traces``.
"""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Doc, Text

from benchmarks import traces


def _trace(name: str) -> dict[str, Any]:
    if traces.find(name) is None:
        pytest.skip(f"the editing trace {name}.json.gz is not available (${traces.TRACES_ENV})")
    return traces.load(name)


@pytest.mark.parametrize("name", traces.CONCURRENT)
def test_concurrent_trace_ends_in_end_content(name: str) -> None:
    trace = _trace(name)
    result = traces.replay_concurrent(trace, name)
    assert result.txns == len(trace["txns"])  # the whole trace, no prefix
    assert result.replicas_equal, "the replicas and the hub diverged"
    assert result.matches, "converged, but not to the trace's endContent"
    assert result.final_chars == len(trace["endContent"])


def test_friendsforever_converges_whatever_the_client_ids() -> None:
    """With the ids reversed the replicas still converge (to another text: see below)."""
    trace = _trace("friendsforever")
    ids = traces.agent_ordered_ids(int(trace["numAgents"]), reverse=True)
    result = traces.replay_concurrent(trace, "friendsforever", ids)
    assert result.replicas_equal


@pytest.mark.parametrize(("first", "second", "expected"), [(1, 2, "sXY"), (2, 1, "sYX")])
def test_insert_after_a_tombstone_meets_a_concurrent_insert(
    first: int, second: int, expected: str
) -> None:
    """Why the replay fixes the client ids: an insert at an index right after a deleted
    character goes after the tombstone, where it meets a concurrent insert made right after
    that character, and the client ids decide their order. The traces' author's CRDT puts
    the first before the tombstone, so ``endContent`` needs the lower id on that side."""
    base: Doc[Any] = Doc(client_id=9)
    base.get("t", type=Text).insert(0, "s.")
    docs: list[Doc[Any]] = [Doc(client_id=first), Doc(client_id=second)]
    for doc in docs:
        doc.apply_update(base.get_update())
    a, b = (doc.get("t", type=Text) for doc in docs)
    del a[1:2]
    a.insert(1, "X")  # replaces the "." it deleted
    b.insert(2, "Y")  # right after the "."
    docs[0].apply_update(docs[1].get_update())
    docs[1].apply_update(docs[0].get_update())
    assert str(a) == str(b) == expected


def test_version_vectors_reject_a_trace_out_of_order() -> None:
    txns = [
        {"parents": [], "agent": 0, "patches": [[0, 0, "a"]]},
        {"parents": [2], "agent": 1, "patches": [[1, 0, "b"]]},
        {"parents": [0], "agent": 0, "patches": [[1, 0, "c"]]},
    ]
    with pytest.raises(traces.TraceError, match="not an earlier one"):
        traces.version_vectors(txns, 2)


def test_a_small_concurrent_trace_with_multi_byte_text() -> None:
    """Code points, not bytes: the replicas meet on text with 2-, 3- and 4-byte characters."""
    trace = {
        "kind": "concurrent",
        "numAgents": 2,
        "endContent": "héllo wörld 🙂!\n",
        "txns": [
            {"parents": [], "agent": 0, "patches": [[0, 0, "héllo 😀\n"]]},
            {"parents": [0], "agent": 0, "patches": [[7, 0, "!"]]},
            {"parents": [0], "agent": 1, "patches": [[6, 0, "wörld "]]},
            {"parents": [1, 2], "agent": 1, "patches": [[12, 1, "🙂"]]},  # after a merge
            {"parents": [3], "agent": 0, "patches": []},  # a trace may end with no patches
        ],
    }
    result = traces.replay_concurrent(trace, "small")
    assert result.replicas_equal
    assert result.matches
