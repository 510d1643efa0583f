from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from huddle.collab import wire


@pytest.mark.parametrize(
    "message",
    [
        wire.SyncStep1(b"\x00"),
        wire.SyncStep2(b"\x01\x02\x03"),
        wire.SyncUpdate(b"\x00\x00"),
        wire.AwarenessMessage(b"\x00"),
        wire.QueryAwareness(),
        wire.AuthDenied("read-only ✋"),
        wire.HuddleMessage(b"{}"),
    ],
)
def test_round_trip(message: wire.Message) -> None:
    assert wire.decode(wire.encode(message)) == message


def test_matches_the_yjs_encoding() -> None:
    # y-protocols writes: varUint(messageSync=0), varUint(messageYjsUpdate=2), varUint8Array(update)
    assert wire.encode(wire.SyncUpdate(bytes(200))) == b"\x00\x02\xc8\x01" + bytes(200)


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b"", "truncated varuint"),
        (b"\x80", "truncated varuint"),
        (b"\xff" * 9, "longer than 8 bytes"),
        (b"\x07", "unknown message type 7"),
        (b"\x00\x05\x00", "unknown sync message type 5"),
        (b"\x00\x02\x05ab", "runs past the end"),
        (b"\x00\x02\x01ab", "trailing bytes"),
        (b"\x03\x00", "trailing bytes"),
        (b"\x02\x00\x02\xff\xfe", "not valid UTF-8"),
    ],
)
def test_malformed_frames_raise_wire_error(frame: bytes, error: str) -> None:
    with pytest.raises(wire.WireError, match=error):
        wire.decode(frame)


@given(st.binary(max_size=64))
def test_decode_never_raises_anything_else(frame: bytes) -> None:
    try:
        message = wire.decode(frame)
    except wire.WireError:
        return
    assert wire.encode(message) == frame


def test_awareness_round_trip_and_validation() -> None:
    entries = [
        wire.AwarenessEntry(7, 3, {"user": {"name": "ann"}}),
        wire.AwarenessEntry(9, 1, None),
    ]
    assert wire.decode_awareness(wire.encode_awareness(entries)) == entries
    not_json = wire.write_varuint(1) + b"\x01\x01" + wire.write_varbytes(b"{nope")
    with pytest.raises(wire.WireError, match="not JSON"):
        wire.decode_awareness(not_json)
    a_list = wire.write_varuint(1) + b"\x01\x01" + wire.write_varbytes(b"[1]")
    with pytest.raises(wire.WireError, match="JSON object"):
        wire.decode_awareness(a_list)
    with pytest.raises(wire.WireError, match="limit 2"):
        wire.decode_awareness(wire.write_varuint(3), max_entries=2)


def _awareness(raw: bytes, client_id: int = 1) -> bytes:
    return (
        wire.write_varuint(1) + wire.write_varuint(client_id) + b"\x01" + wire.write_varbytes(raw)
    )


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"user":{"name":"x"},"v":NaN}', "NaN"),
        (b'{"v":Infinity}', "Infinity"),
        (b'{"v":[-Infinity]}', "-Infinity"),
        (b'{"v":1e999}', "out of a double's range"),
        (b'{"v":-1E400}', "out of a double's range"),
        (b'{"s":"\\ud800"}', "lone surrogate"),
        (b'{"s":"a\\udc00b"}', "lone surrogate"),
        (b'{"\\udbff":1}', "lone surrogate"),  # a key is a string too
        (b'{"s":"\\udc00\\ud800"}', "lone surrogate"),  # a pair the wrong way round
        (b"[" * 33 + b"]" * 33, "nested 33 deep"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested 100000 deep"),
        (b"[" * 1_000_000, "nested 1000000 deep"),  # not even JSON: refused before parsing
    ],
)
def test_awareness_states_must_be_standard_json(raw: bytes, error: str) -> None:
    """What JSON.parse (y-protocols) or a UTF-8 decoder would reject is a WireError, never
    relayed, and deep nesting never reaches json.loads's recursion (RecursionError)."""
    with pytest.raises(wire.WireError, match=error):
        wire.decode_awareness(_awareness(raw), max_depth=32)


def test_an_entry_the_caller_holds_byte_for_byte_is_left_out_unparsed() -> None:
    """Stock y-websocket clients send back every awareness change they receive: an entry whose
    client, clock and JSON bytes the caller already holds is skipped without parsing. Nothing
    else is: other bytes at the same clock, or the same bytes at another clock, are read
    strictly, and the size limit comes first."""
    held = {(1, 1): b'{"a":1}'}

    def holds(client_id: int, clock: int, raw: bytes) -> bool:
        return held.get((client_id, clock)) == raw

    assert wire.decode_awareness(_awareness(b'{"a":1}'), held=holds) == []
    with pytest.raises(wire.WireError, match="holds NaN"):
        wire.decode_awareness(_awareness(b'{"a":NaN}'), held=holds)
    assert wire.decode_awareness(_awareness(b'{"a": 1}'), held=holds) == [
        wire.AwarenessEntry(1, 1, {"a": 1})
    ]
    later = wire.write_varuint(1) + b"\x01\x02" + wire.write_varbytes(b'{"a":1}')
    assert wire.decode_awareness(later, held=holds) == [wire.AwarenessEntry(1, 2, {"a": 1})]
    with pytest.raises(wire.StateTooLarge):
        wire.decode_awareness(_awareness(b'{"a":1}'), held=holds, max_state_bytes=4)


def test_standard_json_states_pass_at_the_limits() -> None:
    pair = wire.decode_awareness(_awareness(b'{"s":"\\ud83d\\ude00","n":1e308,"m":-0.0}'))
    assert pair[0].state == {"s": "😀", "n": 1e308, "m": -0.0}
    deep = b'{"a":' * 31 + b'"[[[{{{"' + b"}" * 31  # brackets inside a string do not count
    (entry,) = wire.decode_awareness(_awareness(deep), max_depth=32)
    assert wire.decode_awareness(wire.encode_awareness([entry]), max_depth=32) == [entry]
    escaped = b'{"a":"\\"[[[[[[[[[[","b":"\\\\"}'  # an escaped quote does not end the string
    assert wire.decode_awareness(_awareness(escaped), max_depth=1)[0].state == {
        "a": '"[[[[[[[[[[',
        "b": "\\",
    }


def test_json_depth_is_linear_on_unterminated_strings() -> None:
    # A string pattern that could fail after its opening quote is retried at every later
    # quote: 10**10 steps on this input. One pass reads it as one unterminated string.
    assert wire.json_depth('"' + '\\"' * 100_000 + "[[") == 0
    assert wire.json_depth('[["a\\\\"],"b"]') == 2


def test_oversized_states_are_refused_before_parsing() -> None:
    raw = b'{"pad":"' + b"x" * 2000 + b'"}'
    with pytest.raises(wire.StateTooLarge, match="2010 bytes"):
        wire.decode_awareness(_awareness(raw), max_state_bytes=2000)
    assert wire.decode_awareness(_awareness(raw), max_state_bytes=2010)[0].state is not None


@pytest.mark.parametrize("state", [{"v": float("nan")}, {"v": float("inf")}, {"s": "\ud800"}])
def test_encode_never_writes_what_json_parse_or_utf8_rejects(state: dict[str, object]) -> None:
    with pytest.raises(wire.WireError):
        wire.encode_awareness([wire.AwarenessEntry(1, 1, state)])


_TEXT = st.text(st.characters(categories=["Cs", "Ll", "Lo", "Nd", "Po", "So"]))  # Cs: surrogates
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _TEXT,  # NaN, inf, lone surrogates
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=20,
)


@given(
    st.one_of(
        st.builds(json.dumps, st.dictionaries(_TEXT, _JSON_VALUES), ensure_ascii=st.booleans()),
        _TEXT,
    )
)
def test_decode_awareness_never_raises_anything_else(raw: str) -> None:
    """Whatever the state, a WireError or entries that encode back to standard JSON."""
    payload = _awareness(raw.encode("utf-8", "surrogatepass"))
    try:
        entries = wire.decode_awareness(payload, max_depth=3)
    except wire.WireError:
        return
    assert wire.decode_awareness(wire.encode_awareness(entries), max_depth=3) == entries
