"""``huddle lsp`` reads ``didChange`` straight from its JSON (``documents.read_did_change``),
without lsprotocol: it must read exactly what lsprotocol reads, and leave to pygls (None) every
message lsprotocol would reject or read otherwise."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lsprotocol import types as lsp
from pygls.protocol import default_converter

from huddle.collab.bridge import TextChange
from huddle.collab.positions import Position, Range
from huddle.lsp.documents import read_apply_edit_result, read_did_change, to_changes
from huddle.lsp.server import _apply_edit_json

CONVERTER = default_converter()  # type: ignore[no-untyped-call]


def lsprotocol_reading(message: Any) -> tuple[str, int, list[TextChange]] | None:
    try:
        note = CONVERTER.structure(message, lsp.DidChangeTextDocumentNotification)
    except Exception:
        return None
    document = note.params.text_document
    return document.uri, document.version, to_changes(list(note.params.content_changes))


def message(uri: Any, version: Any, changes: Any, **extra: Any) -> dict[str, Any]:
    params = {"textDocument": {"uri": uri, "version": version}, "contentChanges": changes}
    return {"jsonrpc": "2.0", "method": "textDocument/didChange", "params": params, **extra}


def ranged(a: Any, b: Any, c: Any, d: Any, text: Any = "x") -> dict[str, Any]:
    start, end = {"line": a, "character": b}, {"line": c, "character": d}
    return {"range": {"start": start, "end": end}, "text": text}


def test_typing_and_a_whole_text_read_as_lsprotocol_reads_them() -> None:
    sent = message("file:///w/a.py", 7, [ranged(0, 1, 0, 1, "é"), {"text": "whole\r\n"}])
    read = read_did_change(json.loads(json.dumps(sent)))
    assert read == (
        "file:///w/a.py",
        7,
        [TextChange(Range(Position(0, 1), Position(0, 1)), "é"), TextChange(None, "whole\r\n")],
    )
    assert read == lsprotocol_reading(sent)


def test_what_is_not_a_plain_did_change_is_left_to_pygls() -> None:
    good = [ranged(0, 0, 0, 0)]
    for odd in (
        message("u", True, good),  # a boolean is not a version
        message("u", 1.0, good),
        message("u", 2**31, good),
        message(None, 1, good),
        message("u", 1, [ranged(-1, 0, 0, 0)]),
        message("u", 1, [ranged(0, 2**31, 0, 0)]),
        message("u", 1, [ranged(0, 0, 0, False)]),
        message("u", 1, [ranged(0, 0, 0, 0, text=None)]),
        message("u", 1, [{"range": None, "text": "x"}]),
        message("u", 1, [{"range": {"start": {"line": 0}}, "text": "x"}]),
        message("u", 1, [{**ranged(0, 0, 0, 0), "rangeLength": "1"}]),
        message("u", 1, None),
        message("u", 1, good, id=3),  # a request, not a notification
        {**message("u", 1, good), "jsonrpc": "1.0"},
        {**message("u", 1, good), "method": "textDocument/didOpen"},
        [message("u", 1, good)],
    ):
        assert read_did_change(odd) is None, odd


numbers = st.one_of(
    st.integers(-3, 3), st.integers(2**31 - 2, 2**31 + 1), st.booleans(), st.none(), st.floats(0, 2)
)
changes = st.one_of(
    st.builds(ranged, numbers, numbers, numbers, numbers, st.one_of(st.text(max_size=3), numbers)),
    st.fixed_dictionaries({"text": st.one_of(st.text(max_size=3), numbers)}),
    st.fixed_dictionaries({"range": st.none(), "text": st.text(max_size=1)}),
)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(st.text(max_size=5), numbers),
    numbers,
    st.one_of(st.lists(changes, max_size=4), numbers),
)
def test_the_fast_reading_never_differs_from_lsprotocol(uri: Any, version: Any, raw: Any) -> None:
    sent = message(uri, version, raw)
    fast = read_did_change(sent)
    if fast is not None:  # taken: exactly what pygls would have handed the handler
        assert fast == lsprotocol_reading(sent)


well_typed = st.one_of(
    st.builds(ranged, *[st.integers(0, 2**31 - 1)] * 4, st.text(alphabet="ab\r\né😀", max_size=3)),
    st.fixed_dictionaries({"text": st.text(max_size=3)}),
)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=5), st.integers(-(2**31), 2**31 - 1), st.lists(well_typed, max_size=4))
def test_every_well_typed_did_change_is_read_fast(uri: str, version: int, raw: Any) -> None:
    sent = json.loads(json.dumps(message(uri, version, raw)))
    fast = read_did_change(sent)
    assert fast is not None
    assert fast == lsprotocol_reading(sent)


@pytest.mark.parametrize("version", [3, None])
def test_apply_edit_is_written_as_lsprotocol_writes_it(version: int | None) -> None:
    """``workspace/applyEdit`` goes out as JSON written by hand (``server._apply_edit_json``)."""
    edits = [
        lsp.TextEdit(lsp.Range(lsp.Position(0, 1), lsp.Position(2, 0)), "é\r\n"),
        lsp.TextEdit(lsp.Range(lsp.Position(3, 0), lsp.Position(3, 0)), ""),
    ]
    identifier = lsp.OptionalVersionedTextDocumentIdentifier(uri="file:///w/a.py", version=version)
    params = lsp.ApplyWorkspaceEditParams(
        edit=lsp.WorkspaceEdit(document_changes=[lsp.TextDocumentEdit(identifier, edits)])
    )
    by_hand = _apply_edit_json(params)
    assert by_hand is not None
    assert by_hand == CONVERTER.unstructure(params)
    labelled = lsp.ApplyWorkspaceEditParams(edit=params.edit, label="x")
    assert _apply_edit_json(labelled) is None  # another shape: pygls writes it


# -- the editor's answer to an applyEdit (documents.read_apply_edit_result) ------------------


def lsprotocol_result(message: Any) -> tuple[str, lsp.ApplyWorkspaceEditResult] | None:
    try:
        response = CONVERTER.structure(message, lsp.ApplyWorkspaceEditResponse)
    except Exception:
        return None
    return response.id, response.result


def answer(result: Any, msg_id: Any = "7f3c", **extra: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "result": result, **extra}


def test_applied_and_refused_answers_read_as_lsprotocol_reads_them() -> None:
    for result in (
        {"applied": True},
        {"applied": False, "failureReason": "stale version"},
        {"applied": False, "failedChange": 0},
        {"applied": False, "failureReason": None, "failedChange": None},  # null: absent
    ):
        sent = json.loads(json.dumps(answer(result)))
        fast = read_apply_edit_result(sent)
        assert fast is not None and fast == lsprotocol_result(sent), sent


def test_what_is_not_a_plain_answer_is_left_to_pygls() -> None:
    for odd in (
        answer({"applied": 1}),  # not a boolean
        answer({"applied": "true"}),
        answer({}),
        answer(None),
        answer({"applied": True, "failureReason": 3}),
        answer({"applied": False, "failedChange": -1}),
        answer({"applied": False, "failedChange": True}),
        answer({"applied": True, "extra": 1}),
        answer({"applied": True}, msg_id=3),  # not one of the ids huddle lsp sends
        answer({"applied": True}, error=None),
        {"jsonrpc": "2.0", "id": "7f3c", "error": {"code": 1, "message": "no"}},
        {**answer({"applied": True}), "jsonrpc": "1.0"},
        [answer({"applied": True})],
    ):
        assert read_apply_edit_result(odd) is None, odd


results = st.fixed_dictionaries(
    {"applied": st.one_of(st.booleans(), numbers, st.text(max_size=2))},
    optional={
        "failureReason": st.one_of(st.text(max_size=3), numbers),
        "failedChange": numbers,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(results, numbers), st.one_of(st.text(max_size=4), numbers))
def test_the_fast_answer_never_differs_from_lsprotocol(result: Any, msg_id: Any) -> None:
    sent = answer(result, msg_id)
    fast = read_apply_edit_result(sent)
    if fast is not None:  # taken: exactly what pygls would have handed the future
        assert fast == lsprotocol_result(sent)
    # The optional fields may be absent or null (lsprotocol reads null as absent).
    reason = result.get("failureReason") if isinstance(result, dict) else None
    failed = result.get("failedChange") if isinstance(result, dict) else None
    well_typed = (
        isinstance(result, dict)
        and type(msg_id) is str
        and type(result["applied"]) is bool
        and (reason is None or type(reason) is str)
        and (failed is None or (type(failed) is int and 0 <= failed < 2**31))
    )
    assert (fast is not None) == well_typed, sent
