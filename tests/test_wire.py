from __future__ import annotations

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
