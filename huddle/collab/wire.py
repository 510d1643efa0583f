"""The y-websocket wire protocol (y-protocols sync + awareness), decoded strictly.

pycrdt's own ``Decoder`` indexes past the end of truncated input (``IndexError``) and accepts
trailing garbage; a hub facing untrusted peers needs every malformed frame to surface as one
typed error, so this module re-implements the small codec with bounds checks.

Frame layout (lib0 encoding): ``varuint message_type`` then a type-specific body:

- ``0 SYNC``: ``varuint sub_type`` (0 step 1, 1 step 2, 2 update) then ``varbytes payload``
- ``1 AWARENESS``: ``varbytes`` awareness update
  (``varuint count`` then per client ``varuint id, varuint clock, varstring json_state``);
  states are standard JSON only, as ``JSON.parse`` reads it (see ``decode_awareness``)
- ``2 AUTH``: ``varuint 0`` (permission denied) then ``varstring reason`` (hub -> client only)
- ``3 QUERY_AWARENESS``: no body
- ``100 HUDDLE``: ``varbytes`` UTF-8 JSON: Huddle's own request/response channel between the hub
  and ``huddle lsp`` (completions, summaries, invites). Stock Yjs clients never send it, and the
  hub only ever sends it in answer to one.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from huddle.collab.errors import CollabError

MAX_VARUINT_BYTES = 8  # 56 bits: lib0 numbers are at most 53 bits.
# The deepest awareness state decoded when the caller names no limit: the most a hub may be
# configured with (``Limits.max_awareness_depth``), and far below where ``json.loads``, which
# recurses once per level, meets Python's recursion limit (1000 frames, shared with the caller).
MAX_JSON_DEPTH = 512


class WireError(CollabError):
    """A frame that does not follow the y-websocket protocol."""


class StateTooLarge(WireError):
    """An awareness state longer than the caller's limit (refused before it is parsed)."""


class MessageType(IntEnum):
    SYNC = 0
    AWARENESS = 1
    AUTH = 2
    QUERY_AWARENESS = 3
    HUDDLE = 100


class SyncType(IntEnum):
    STEP1 = 0
    STEP2 = 1
    UPDATE = 2


@dataclass(frozen=True, slots=True)
class SyncStep1:
    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    update: bytes


@dataclass(frozen=True, slots=True)
class SyncUpdate:
    update: bytes


@dataclass(frozen=True, slots=True)
class AwarenessMessage:
    payload: bytes


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    pass


@dataclass(frozen=True, slots=True)
class AuthDenied:
    reason: str


@dataclass(frozen=True, slots=True)
class HuddleMessage:
    payload: bytes


Message = (
    SyncStep1
    | SyncStep2
    | SyncUpdate
    | AwarenessMessage
    | QueryAwareness
    | AuthDenied
    | HuddleMessage
)


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: dict[str, Any] | None  # None: the client left

    @property
    def removed(self) -> bool:
        return self.state is None


class _Reader:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def varuint(self) -> int:
        data, start = self._data, self._pos
        end = min(len(data), start + MAX_VARUINT_BYTES)
        value = 0
        shift = 0
        for pos in range(start, end):
            byte = data[pos]
            if byte < 0x80:
                self._pos = pos + 1
                return value | (byte << shift)
            value |= (byte & 0x7F) << shift
            shift += 7
        if end - start == MAX_VARUINT_BYTES:
            raise WireError("varuint longer than 8 bytes")
        raise WireError("truncated varuint")

    def varbytes(self) -> bytes:
        length = self.varuint()
        end = self._pos + length
        if end > len(self._data):
            raise WireError(f"length prefix {length} runs past the end of the frame")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def varstring(self) -> str:
        try:
            return self.varbytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WireError("string is not valid UTF-8") from exc

    def end(self) -> None:
        if self._pos != len(self._data):
            raise WireError(f"{len(self._data) - self._pos} trailing bytes after the message")


def write_varuint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varuint must be non-negative")
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def write_varbytes(data: bytes) -> bytes:
    return write_varuint(len(data)) + data


def decode(frame: bytes) -> Message:
    """Decode one frame; raise ``WireError`` for anything that is not exactly one message."""
    reader = _Reader(frame)
    kind = reader.varuint()
    message: Message
    if kind == MessageType.SYNC:
        sub = reader.varuint()
        payload = reader.varbytes()
        if sub == SyncType.STEP1:
            message = SyncStep1(payload)
        elif sub == SyncType.STEP2:
            message = SyncStep2(payload)
        elif sub == SyncType.UPDATE:
            message = SyncUpdate(payload)
        else:
            raise WireError(f"unknown sync message type {sub}")
    elif kind == MessageType.AWARENESS:
        message = AwarenessMessage(reader.varbytes())
    elif kind == MessageType.QUERY_AWARENESS:
        message = QueryAwareness()
    elif kind == MessageType.HUDDLE:
        message = HuddleMessage(reader.varbytes())
    elif kind == MessageType.AUTH:
        sub = reader.varuint()
        if sub != 0:
            raise WireError(f"unknown auth message type {sub}")
        message = AuthDenied(reader.varstring())
    else:
        raise WireError(f"unknown message type {kind}")
    reader.end()
    return message


def encode(message: Message) -> bytes:
    match message:
        case SyncStep1(state_vector):
            return b"\x00\x00" + write_varbytes(state_vector)
        case SyncStep2(update):
            return b"\x00\x01" + write_varbytes(update)
        case SyncUpdate(update):
            return b"\x00\x02" + write_varbytes(update)
        case AwarenessMessage(payload):
            return b"\x01" + write_varbytes(payload)
        case QueryAwareness():
            return b"\x03"
        case AuthDenied(reason):
            return b"\x02\x00" + write_varbytes(reason.encode("utf-8"))
        case HuddleMessage(payload):
            return b"\x64" + write_varbytes(payload)
    raise TypeError(f"not a wire message: {message!r}")


def decode_awareness(
    payload: bytes,
    *,
    max_entries: int = 1024,
    max_depth: int = MAX_JSON_DEPTH,
    max_state_bytes: int | None = None,
    held: Callable[[int, int, bytes], bool] | None = None,
) -> list[AwarenessEntry]:
    """Decode an awareness update; each state must be a JSON object or ``null``, in standard
    JSON only: what y-protocols' ``JSON.parse`` reads and a strict UTF-8 decoder accepts.

    Refused (``WireError``): ``NaN``, ``Infinity`` and numbers that overflow to them (Python's
    ``json`` reads and writes those, ``JSON.parse`` throws on them and kills every Yjs client
    it is relayed to); strings holding a lone surrogate (``"\\ud800"``: cannot be written back
    as UTF-8); nesting deeper than ``max_depth``, counted without recursion before ``json.loads``
    recurses; and (``StateTooLarge``) a state longer than ``max_state_bytes``, before parsing.

    ``held(client_id, clock, state_json)``: whether the caller already holds exactly this
    entry, the same clock and the same JSON bytes, which it read (or wrote) as standard JSON
    before. Such an entry is left out unparsed: it changes nothing (y-protocols applies only a
    newer clock), and what it would be checked for was checked on those same bytes. Stock
    y-websocket clients send back every remote awareness change they receive, so most of what
    a hub reads is such an echo.
    """
    reader = _Reader(payload)
    count = reader.varuint()
    if count > max_entries:
        raise WireError(f"awareness update lists {count} clients (limit {max_entries})")
    entries: list[AwarenessEntry] = []
    for _ in range(count):
        client_id = reader.varuint()
        clock = reader.varuint()
        raw = reader.varbytes()
        if max_state_bytes is not None and len(raw) > max_state_bytes:
            raise StateTooLarge(f"awareness state of {len(raw)} bytes (limit {max_state_bytes})")
        if held is not None and held(client_id, clock, raw):
            continue
        entries.append(AwarenessEntry(client_id, clock, _state(raw, max_depth)))
    reader.end()
    return entries


def _state(raw: bytes, max_depth: int) -> dict[str, Any] | None:
    """One awareness state's JSON, read strictly (see ``decode_awareness``)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError("string is not valid UTF-8") from exc
    # Nesting is at most the number of opening brackets (those in strings too): most states
    # have a handful, and the exact count, a pass over the text, is needed only past the limit.
    if text.count("{") + text.count("[") > max_depth:
        depth = json_depth(text)
        if depth > max_depth:
            raise WireError(f"awareness state nested {depth} deep (limit {max_depth})")
    try:
        state = _STRICT_JSON.decode(text)
    except WireError:
        raise
    except ValueError as exc:  # JSONDecodeError, and ints past Python's digit limit
        raise WireError("awareness state is not JSON") from exc
    if state is not None and not isinstance(state, dict):
        raise WireError("awareness state must be a JSON object or null")
    # A lone surrogate, which json.loads lets through, can only come from a \u escape: the
    # text itself is valid UTF-8, which holds none.
    if "\\u" in text:
        try:
            encode_state(state)
        except WireError as exc:
            raise WireError(f"awareness state is not standard JSON: {exc}") from None
    return state


def encode_state(state: dict[str, Any] | None) -> bytes:
    """One awareness state as the UTF-8 JSON that goes on the wire (what JSON.stringify writes:
    no spaces, no escapes beyond JSON's own). ``WireError`` for anything ``JSON.parse`` or a
    strict UTF-8 decoder would reject: a NaN or infinite number, a lone surrogate."""
    try:
        return _STANDARD_JSON.encode(state).encode("utf-8")
    except UnicodeEncodeError:
        raise WireError("a string holds a lone surrogate") from None
    except ValueError as exc:  # allow_nan=False: NaN, Infinity
        raise WireError(str(exc)) from None


def encode_awareness_entry(entry: AwarenessEntry) -> bytes:
    """One entry of an awareness update (``varuint id, varuint clock, varstring state``)."""
    return (
        write_varuint(entry.client_id)
        + write_varuint(entry.clock)
        + write_varbytes(encode_state(entry.state))
    )


def state_json_at(encoded: bytes) -> int:
    """Where the state's JSON starts in an entry from ``encode_awareness_entry``."""
    reader = _Reader(encoded)
    for _ in range(3):  # client id, clock, the state's length
        reader.varuint()
    return reader._pos


def join_awareness(encoded: list[bytes]) -> bytes:
    """An awareness update from entries already encoded by ``encode_awareness_entry``."""
    return write_varuint(len(encoded)) + b"".join(encoded)


def encode_awareness(entries: list[AwarenessEntry]) -> bytes:
    """``WireError`` if a state is not standard JSON (see ``encode_state``)."""
    return join_awareness([encode_awareness_entry(entry) for entry in entries])


# A JSON string, or an unterminated one running to the end of the text: matched in one
# left-to-right pass whatever the input (a pattern that could fail after an opening quote would
# be retried at every later quote: quadratic on ``"\"\"\"...``).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
# Brackets to +1 / -1 (as signed bytes), everything else deleted.
_DEPTH_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON ``text``, in linear time and without
    recursion. For text that is not JSON it bounds the depth ``json.loads`` reaches before it
    fails: both read the same strings and brackets up to the first error."""
    skeleton = _JSON_STRING.sub("", text).encode("utf-8", "surrogatepass")
    steps = skeleton.translate(_DEPTH_STEPS, _NOT_BRACKETS)
    return max(itertools.accumulate(memoryview(steps).cast("b")), default=0)


def _reject_constant(name: str) -> Any:
    raise WireError(f"awareness state holds {name}, which is not JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e999: json.loads makes it inf, json.dumps Infinity
        raise WireError(f"awareness state holds {literal[:40]}, out of a double's range")
    return value


# Made once (json.loads and json.dumps with options build a new one per call).
_STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_STANDARD_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def decode_state_vector(state: bytes) -> dict[int, int]:
    """A Yjs state vector: for each client id, the number of its items this replica holds."""
    reader = _Reader(state)
    result = {}
    for _ in range(reader.varuint()):
        client = reader.varuint()
        result[client] = reader.varuint()
    reader.end()
    return result


EMPTY_UPDATE = b"\x00\x00"
