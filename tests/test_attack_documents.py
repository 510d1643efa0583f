"""Documents built to hurt the hub (issue 12, items 1 and 5), sent the way an attacker would:
raw y-websocket frames from a member with a valid token.

- A 20,000-deep chain of Y.Map under ``files`` made the next ``complete`` segfault the hub
  (str() of the chain overflows the native stack), after every restart too since the update
  was stored; a value nested 100,000 deep crashed it in pycrdt's own decoder. Depth is limited
  at the door (``Limits.max_nesting_depth``), across updates too, and values of ``files``
  that are not ``Text`` are never walked.
- A reader's no-op updates each cost a pass over the whole document; now the doc's delete
  set is read once per change of the doc, and past a small burst a reader's updates are
  dropped unread (``Limits.reader_update_burst``, ``reader_updates_per_second``).

Tests that could crash the hub before the fix run it as a subprocess (``huddle serve``), so a
crash fails the test instead of killing pytest.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Array, Assoc, Doc, Map, StickyIndex, Text
from websockets.asyncio.client import ClientConnection, connect

from huddle.collab import schema, updates, wire
from huddle.lsp.hub_client import HubClient
from huddle.protocol import room_url
from huddle.server.config import Limits
from huddle.server.hub import Hub
from huddle.server.room import Room
from huddle.server.store import Database, Pending
from tests.conftest import AI_MODEL
from tests.support.hubs import local_hub
from tests.support.peers import HubProcess, close_of, eventually, token
from tests.support.replay import FakeBackend

ROOM = "attack/docs"
LIMIT = Limits().max_nesting_depth
REFUSED = (4400, f"update refused: shared types nest deeper than {LIMIT} levels")


# -- building the documents ------------------------------------------------------------------


def _chain(top: Map[Any], levels: int) -> Map[Any]:
    """Nest ``levels`` maps below ``top`` (key "k" each); the deepest one."""
    current = top
    for _ in range(levels):
        current["k"] = Map()
        current = current["k"]
    return current


def _bottom(top: Map[Any]) -> tuple[Map[Any], int]:
    """The deepest map of a chain and its level below ``top`` (iterative: never str())."""
    current, depth = top, 0
    while "k" in current:
        current = current["k"]
        depth += 1
    return current, depth


def _deep_chain(levels: int) -> bytes:
    doc: Doc[Any] = Doc()
    schema.files(doc)["deep.json"] = Map()
    _chain(schema.files(doc)["deep.json"], levels - 1)  # type: ignore[arg-type]
    return doc.get_update()


def _deep_value(depth: int) -> bytes:
    """An update holding, at ``meta["x"]``, an array nested ``depth`` deep: one ContentAny
    (lib0 any tags 117 array, 126 null), written by hand as pycrdt would recurse to build it."""
    value = b"\x75\x01" * depth + b"\x7e"
    name, key = b"meta", b"x"
    item = (
        b"\x28"  # info: ContentAny (8) | has parent sub (0x20); no origins: parent follows
        + b"\x01"  # parent is a root type, by name
        + wire.write_varbytes(name)
        + wire.write_varbytes(key)
        + b"\x01"  # one value
        + value
    )
    # one client (id 7) with one item at clock 0, then an empty delete set
    return b"\x01\x01\x07\x00" + item + b"\x00"


def _texts(doc: Doc[Any]) -> dict[str, str]:
    return schema.file_texts(doc)


async def _recv(ws: ClientConnection) -> wire.Message:
    frame = await asyncio.wait_for(ws.recv(), 15)
    assert isinstance(frame, bytes)
    return wire.decode(frame)


async def _journal_users(hub: Hub) -> list[str]:
    return [e.user for e in await hub.store.call(lambda db: db.journal(ROOM))]


def _params(client: HubClient, path: str, offset: int) -> dict[str, Any]:
    text = schema.files(client.doc)[path]
    assert isinstance(text, Text)
    assoc = Assoc.AFTER if offset < len(text) else Assoc.BEFORE
    return {
        "path": path,
        "cursor": dict(StickyIndex.new(text, offset, assoc).to_json()),
        "state": base64.b64encode(client.doc.get_state()).decode(),
    }


async def _seeded(client: HubClient, path: str, content: str) -> None:
    assert await client.request("create_file", {"path": path, "content": content})
    await eventually(lambda: path in schema.files(client.doc), what=f"{path} reaches the client")


@pytest.fixture
async def editor(ai_hub: Hub, data_dir: Path) -> AsyncIterator[HubClient]:
    async with HubClient(ai_hub.url, ROOM, token(data_dir, ROOM, "ann")) as client:
        await asyncio.wait_for(client.synced.wait(), 10)
        await _seeded(client, "a.py", "def f():\n    return 1\n")
        yield client


# -- item 1: nesting ---------------------------------------------------------------------------


async def test_a_20000_deep_chain_of_maps_is_refused_and_completions_go_on(
    ai_hub: Hub, data_dir: Path, editor: HubClient, backend: FakeBackend
) -> None:
    url = room_url(ai_hub.url, ROOM, token(data_dir, ROOM, "mallory"))
    chain = _deep_chain(20_000)
    assert len(chain) > 280_000  # the ~300 KB update of the report
    assert await close_of(url, wire.encode(wire.SyncUpdate(chain))) == REFUSED

    room = ai_hub.room(ROOM)
    assert room is not None
    assert "deep.json" not in schema.files(room.doc)
    assert "mallory" not in await _journal_users(ai_hub)
    answer = await editor.request("complete", _params(editor, "a.py", 9))
    assert answer["text"] == "x = 1"
    assert len(backend.requests) == 1


@pytest.mark.parametrize("per_update", [10, 100])
async def test_a_chain_built_over_several_updates_is_stopped_at_the_limit(
    ai_hub: Hub, data_dir: Path, editor: HubClient, per_update: int
) -> None:
    """Each update nests ``per_update`` more maps below the last one; all are sent at once, so
    the parents of most are still on their way to the store when the next one arrives."""
    local: Doc[Any] = Doc()
    local.apply_update(editor.doc.get_update())
    frames = []
    for number in range(6):
        before = local.get_state()
        if number == 0:
            schema.files(local)["deep.json"] = Map()  # level 1
            bottom = _chain(schema.files(local)["deep.json"], per_update - 1)  # type: ignore[arg-type]
        else:
            bottom = _chain(bottom, per_update)
        frames.append(wire.encode(wire.SyncUpdate(local.get_update(before))))
    url = room_url(ai_hub.url, ROOM, token(data_dir, ROOM, "mallory"))
    assert await close_of(url, *frames) == REFUSED

    room = ai_hub.room(ROOM)
    assert room is not None
    accepted = LIMIT // per_update  # whole updates that stay within the limit

    def depth() -> int:
        top = schema.files(room.doc).get("deep.json")
        return _bottom(top)[1] + 1 if isinstance(top, Map) else 0

    await eventually(lambda: depth() == accepted * per_update, what="the accepted updates")
    assert (await _journal_users(ai_hub)).count("mallory") == accepted
    assert accepted * per_update <= LIMIT
    answer = await editor.request("complete", _params(editor, "a.py", 9))
    assert answer["text"] == "x = 1"


async def test_nested_values_past_the_limit_are_refused(hub: Hub, data_dir: Path) -> None:
    """Arrays and objects nest in values too (a Map entry, an embed in a Text): refused at the
    limit as well, and only that connection is closed."""
    url = room_url(hub.url, ROOM, token(data_dir, ROOM, "mallory"))
    deep: Any = "leaf"
    for level in range(LIMIT + 1):
        deep = {"k": deep} if level % 2 else [deep]
    doc: Doc[Any] = Doc()
    doc.get("meta", type=Map)["x"] = deep
    assert await close_of(url, wire.encode(wire.SyncUpdate(doc.get_update()))) == (
        4400,
        f"update refused: a value nests deeper than {LIMIT} levels",
    )
    embedded: Doc[Any] = Doc()
    schema.files(embedded)["e.md"] = text = Text("ab")
    text.insert_embed(1, deep)
    code, reason = await close_of(url, wire.encode(wire.SyncUpdate(embedded.get_update())))
    assert (code, reason) == (4400, f"update refused: a value nests deeper than {LIMIT} levels")
    shallow: Doc[Any] = Doc()
    shallow.get("meta", type=Map)["x"] = Array([{"a": [1, {"b": 2}]}])
    async with connect(url) as ws:
        await ws.send(wire.encode(wire.SyncUpdate(shallow.get_update())))

        async def stored() -> bool:
            return "mallory" in await _journal_users(hub)

        await eventually(stored, what="a shallow value to be stored")


async def test_values_nested_100000_deep_do_not_crash_the_hub(
    tmp_path: Path,
) -> None:
    """pycrdt decodes values recursively: this one overflowed the native stack in the hub's
    first look at the update (an editor's) and in its no-op check (a reader's)."""
    data_dir = tmp_path / "hub"
    bomb = wire.encode(wire.SyncUpdate(_deep_value(100_000)))
    async with HubProcess(data_dir) as served:
        for role in ("read", "edit"):
            url = room_url(served.url, ROOM, token(data_dir, ROOM, f"mallory-{role}", role))
            code, reason = await close_of(url, bomb)
            assert served.proc is not None and served.proc.returncode is None, served.log()
            assert (code, reason) == (
                4400,
                f"update refused: a value nests deeper than {LIMIT} levels",
            )
        async with HubClient(served.url, ROOM, token(data_dir, ROOM, "ann")) as ann:
            await asyncio.wait_for(ann.synced.wait(), 10)
            schema.files(ann.doc)["ok.txt"] = Text("still here")
            await ann.flush()
        async with HubClient(served.url, ROOM, token(data_dir, ROOM, "bob")) as bob:
            await eventually(lambda: _texts(bob.doc) == {"ok.txt": "still here"}, what="sync")


async def test_a_deep_document_stored_before_the_limit_does_not_crash_the_hub(
    tmp_path: Path, backend: FakeBackend
) -> None:
    """The chain was committed before the hub checked depth: the room loads, a member touches
    the chain (so it counts as recently edited: what the prompt builder read), completions
    still answer, and the chain cannot grow deeper (its levels are read from the doc)."""
    data_dir = tmp_path / "hub"
    data_dir.mkdir()
    chain = _deep_chain(20_000)
    db = Database.in_dir(data_dir)
    try:
        record = db.load_room(ROOM, create=True)
        assert record is not None
        db.append([Pending(None, record.room_id, 1, "mallory", chain)])  # type: ignore[arg-type]
    finally:
        db.close()

    llm = ("--llm-url", backend.url, "--llm-model", AI_MODEL)
    async with HubProcess(data_dir, None, *llm) as served:
        async with HubClient(served.url, ROOM, token(data_dir, ROOM, "ann")) as ann:
            await asyncio.wait_for(ann.synced.wait(), 10)
            await _seeded(ann, "a.py", "def f():\n    return 1\n")
            top = schema.files(ann.doc)["deep.json"]
            assert isinstance(top, Map)

            local: Doc[Any] = Doc()
            local.apply_update(ann.doc.get_update())
            local_top = schema.files(local)["deep.json"]
            assert isinstance(local_top, Map)
            mallory = room_url(served.url, ROOM, token(data_dir, ROOM, "mallory"))
            async with connect(mallory) as ws:  # a value in the top map: level 2, fine
                before = local.get_state()
                local_top["touched"] = 1
                await ws.send(wire.encode(wire.SyncUpdate(local.get_update(before))))
                await eventually(lambda: "touched" in top, what="the touch to be relayed")

            answer = await ann.request("complete", _params(ann, "a.py", 9))
            assert answer["text"] == "x = 1"
            assert served.proc is not None and served.proc.returncode is None

            bottom, depth = _bottom(local_top)
            assert depth == 19_999
            before = local.get_state()
            bottom["k"] = Map()
            deeper = wire.encode(wire.SyncUpdate(local.get_update(before)))
            assert await close_of(mallory, deeper) == REFUSED
            text = schema.files(ann.doc)["a.py"]
            assert isinstance(text, Text)
            text.insert(0, "# still editing\n")
            await ann.flush()
            answer = await ann.request("complete", _params(ann, "a.py", 9))
            assert answer["text"] == "x = 1"
        assert served.proc is not None and served.proc.returncode is None, served.log()


# -- the decoder, against what pycrdt writes -------------------------------------------------


def _random_doc(rng: random.Random) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    files = schema.files(doc)
    files["a.py"] = text = Text("héllo 😀\n")
    containers: list[Map[Any] | Array[Any]] = [files, doc.get("meta", type=Map)]
    for step in range(rng.randint(5, 60)):
        roll = rng.random()
        target = rng.choice(containers)
        if roll < 0.3:
            child: Map[Any] | Array[Any] = Map() if rng.random() < 0.5 else Array()
            if isinstance(target, Map):
                target[f"k{step}"] = child
                containers.append(target[f"k{step}"])
            else:
                target.append(child)
                containers.append(target[len(target) - 1])
        elif roll < 0.5:
            value = rng.choice([1, 2.5, "s", None, True, [1, [2, {"x": [3]}]], {"b": b"\x00"}])
            if isinstance(target, Map):
                target[f"v{step % 4}"] = value
            else:
                target.append(value)
        elif roll < 0.8:
            text.insert(0, "ab\n")
        elif len(text) > 4:
            del text[0:2]
    return doc


def _deepest_type(doc: Doc[Any]) -> int:
    """How deep shared types nest under the root types (a root type's child: 1), walked
    iteratively through pycrdt."""
    deepest = 0
    stack: list[tuple[Map[Any] | Array[Any], int]] = [
        (schema.files(doc), 0),
        (doc.get("meta", type=Map), 0),
    ]
    while stack:
        container, depth = stack.pop()
        values = list(container.values()) if isinstance(container, Map) else list(container)
        for value in values:
            if isinstance(value, Map | Array | Text):
                deepest = max(deepest, depth + 1)
                if isinstance(value, Map | Array):
                    stack.append((value, depth + 1))
    return deepest


def test_the_decoder_reads_what_pycrdt_writes() -> None:
    """Clock ranges match pycrdt's state vector and the nesting levels match the document's;
    any corruption of an update is an UpdateError, never another exception."""
    rng = random.Random(12)
    for _ in range(150):
        doc = _random_doc(rng)
        update = doc.get_update()
        decoded = updates.decode(update, max_depth=LIMIT)
        ends: dict[int, int] = {}
        for block in decoded.blocks:
            ends[block.client] = max(ends.get(block.client, 0), block.end)
        assert ends == wire.decode_state_vector(doc.get_state())
        levels = updates.Nesting().levels(decoded)
        types = [lv for b, lv in zip(decoded.blocks, levels, strict=True) if b.kind == updates.TYPE]
        assert max(types) == _deepest_type(doc)
        for _ in range(20):
            broken = bytearray(update)
            for _ in range(rng.randint(1, 3)):
                broken[rng.randrange(len(broken))] = rng.randrange(256)
            with contextlib.suppress(updates.UpdateError):
                updates.decode(bytes(broken[: rng.randint(1, len(broken))]), max_depth=LIMIT)


def test_a_second_copy_of_an_item_cannot_hide_its_depth() -> None:
    """Yrs integrates the first copy of an item it can; if the one the room recorded was not
    integrated (its update failed there), a later copy nested deeper must count: the room
    keeps the deeper level of the two."""
    shallow: Doc[Any] = Doc(client_id=77)
    schema.files(shallow)["x"] = Map()  # item (77, 0) at level 1
    deep: Doc[Any] = Doc(client_id=78)
    schema.files(deep)["chain"] = Map()
    bottom = _chain(schema.files(deep)["chain"], LIMIT - 3)  # type: ignore[arg-type]
    twin: Doc[Any] = Doc(client_id=77)
    twin.apply_update(deep.get_update())
    before = twin.get_state()
    bottom_twin, _ = _bottom(schema.files(twin)["chain"])  # type: ignore[arg-type]
    bottom_twin["x"] = Map()  # item (77, 0) again, at level LIMIT - 1
    x_again = twin.get_update(before)
    before = twin.get_state()
    _chain(bottom_twin["x"], 2)  # levels LIMIT and LIMIT + 1
    children = twin.get_update(before)

    nesting = updates.Nesting()
    for update in (shallow.get_update(), deep.get_update(), x_again):
        decoded = updates.decode(update, max_depth=LIMIT)
        nesting.add(decoded, nesting.check(decoded, LIMIT))
    assert bottom is not None
    with pytest.raises(updates.TooDeep):
        nesting.check(updates.decode(children, max_depth=LIMIT), LIMIT)


# -- item 5: readers' no-op updates --------------------------------------------------------------


def _fragmented(ops: int, seed: int = 5) -> Doc[Any]:
    """A text typed and deleted at random places: thousands of items and deleted ranges."""
    rng = random.Random(seed)
    doc: Doc[Any] = Doc()
    schema.files(doc)["big.txt"] = text = Text("")
    for _ in range(ops):
        size = len(text)
        if size > 20 and rng.random() < 0.3:
            start = rng.randrange(size - 3)
            del text[start : start + rng.randint(1, 3)]
        else:
            text.insert(rng.randint(0, size), rng.choice("abcdef \n") * rng.randint(1, 3))
    return doc


@contextlib.asynccontextmanager
async def _reader_of_a_fragmented_doc(
    hub: Hub, data_dir: Path
) -> AsyncIterator[tuple[Room, ClientConnection, Doc[Any], bytes]]:
    """The room holds a fragmented document; a raw reader synced with it. Yields the room,
    the reader's connection, its doc and its sync reply (no items: its whole delete set)."""
    source = _fragmented(4000)
    async with connect(room_url(hub.url, ROOM, token(data_dir, ROOM, "ann"))) as ann:
        await ann.send(wire.encode(wire.SyncUpdate(source.get_update())))
        await eventually(lambda: hub.room(ROOM) is not None, what="the room")
        room = hub.room(ROOM)
        assert room is not None
        await eventually(lambda: _texts(room.doc) == _texts(source), what="the document")
    reader_doc: Doc[Any] = Doc()
    async with connect(room_url(hub.url, ROOM, token(data_dir, ROOM, "ro", "read"))) as ws:
        step1 = await _recv(ws)
        assert isinstance(step1, wire.SyncStep1)
        await ws.send(wire.encode(wire.SyncStep1(reader_doc.get_state())))
        while not isinstance(message := await _recv(ws), wire.SyncStep2):
            pass
        reader_doc.apply_update(message.update)
        reply = reader_doc.get_update(step1.state_vector)
        assert len(reply) > 1000  # no items, but the delete set of the whole document
        yield room, ws, reader_doc, reply
    assert _texts(room.doc) == _texts(source)


async def _handled(ws: ClientConnection, doc: Doc[Any]) -> list[wire.Message]:
    """Wait until the hub has handled everything sent before (it answers a connection's
    messages in order); what it sent meanwhile."""
    await ws.send(wire.encode(wire.SyncStep1(doc.get_state())))
    seen: list[wire.Message] = []
    while not isinstance(message := await _recv(ws), wire.SyncStep2):
        seen.append(message)
    return seen


def _counting_reads(room: Room) -> list[int]:
    """Count the room doc's ``get_update`` calls (each a pass over the doc) by wrapping the
    doc's own method; the count is the cost measured here, not a time."""
    reads = [0]
    real_get_update = room.doc.get_update

    def counting_get_update(*state: bytes) -> bytes:
        reads[0] += 1
        return real_get_update(*state)

    room.doc.get_update = counting_get_update  # type: ignore[method-assign]
    return reads


async def test_a_readers_no_op_updates_cost_no_pass_over_the_document(tmp_path: Path) -> None:
    """2,000 no-op updates from a reader on a fragmented document (1,000 copies of its sync
    reply, 1,000 of a one-range delete set already applied): the hub reads the doc's delete
    set once, not once per update; then 100 real writes: dropped, and no pass either. The
    reader rate limit is lifted here, so every update is looked at."""
    data_dir = tmp_path / "hub"
    limits = Limits(message_burst=10_000, reader_update_burst=10_000)
    async with (
        local_hub(data_dir, limits=limits) as hub,
        _reader_of_a_fragmented_doc(hub, data_dir) as (room, ws, reader_doc, reply),
    ):
        deletes = updates.decode(reply, max_depth=LIMIT).deletes
        client, ranges = next((c, r) for c, r in deletes.items() if r)
        start, end = ranges[0]
        one_range = b"\x00\x01" + b"".join(
            wire.write_varuint(n) for n in (client, 1, start, end - start)
        )
        reads, dropped = _counting_reads(room), hub.metrics.dropped_updates._value.get()
        for frame in (reply, one_range) * 1000:
            await ws.send(wire.encode(wire.SyncUpdate(frame)))
        seen = await _handled(ws, reader_doc)
        assert not any(isinstance(m, wire.AuthDenied) for m in seen)
        assert hub.metrics.dropped_updates._value.get() == dropped
        assert reads[0] <= 2, reads  # the delete set once, and the answer to the sync step 1

        text = schema.files(reader_doc)["big.txt"]
        assert isinstance(text, Text)
        before = reader_doc.get_state()
        del text[0:5]  # a write with no items: deletions the doc lacks
        reads[0] = 0
        for _ in range(100):
            await ws.send(wire.encode(wire.SyncUpdate(reader_doc.get_update(before))))
        seen = await _handled(ws, reader_doc)
        assert [m for m in seen if isinstance(m, wire.AuthDenied)]  # told once
        assert hub.metrics.dropped_updates._value.get() == dropped + 100
        assert reads[0] <= 1, reads  # the answer to the sync step 1


async def test_a_readers_updates_are_rate_limited(hub: Hub, data_dir: Path) -> None:
    """A reader has one update to send per connection (its sync reply): past
    ``reader_update_burst`` and ``reader_updates_per_second`` the hub drops them unread."""
    limits = Limits()
    async with _reader_of_a_fragmented_doc(hub, data_dir) as (room, ws, reader_doc, _):
        text = schema.files(reader_doc)["big.txt"]
        assert isinstance(text, Text)
        before = reader_doc.get_state()
        text.insert(0, "x")
        write = wire.encode(wire.SyncUpdate(reader_doc.get_update(before)))
        reads, dropped = _counting_reads(room), hub.metrics.dropped_updates._value.get()
        started = time.monotonic()
        for _ in range(300):
            await ws.send(write)
        seen = await _handled(ws, reader_doc)
        elapsed = time.monotonic() - started
        looked_at = hub.metrics.dropped_updates._value.get() - dropped
        allowed = limits.reader_update_burst + limits.reader_updates_per_second * elapsed
        assert 1 <= looked_at <= allowed + 1, (looked_at, elapsed)
        assert [m for m in seen if isinstance(m, wire.AuthDenied)]  # told it is read-only
        assert reads[0] <= 1, reads  # the answer to the sync step 1


def _state_vector_clients(state: bytes) -> int:
    """How many clients a Yjs state vector lists (its first varint)."""
    count, shift = 0, 0
    for byte in state:
        count |= (byte & 0x7F) << shift
        if byte < 0x80:
            return count
        shift += 7
    raise ValueError("truncated state vector")


async def test_files_the_hub_creates_add_no_client_to_the_rooms_state(
    hub: Hub, data_dir: Path
) -> None:
    """The hub wrote each file it created (``create_file``, what every editor asks when it opens
    a file the room lacks) from a new client id: the room's state vector grew by an entry per
    file, and at about 4,900 files the state an editor sends with each completion passed its
    64 KiB limit, so no completion worked in that room (benchmarks/quality.py). Two editors
    creating 8 files at once each (the most a connection may have in flight), 4 times: every
    file arrives, once, and the hub's writes are one client of the state vector."""
    name = "team/many-files"
    async with (
        HubClient(hub.url, name, token(data_dir, name, "ann")) as ann,
        HubClient(hub.url, name, token(data_dir, name, "bob")) as bob,
    ):
        await asyncio.wait_for(asyncio.gather(ann.synced.wait(), bob.synced.wait()), 10)
        paths = iter(range(64))
        for _ in range(4):
            batch = [(client, next(paths)) for client in (ann, bob) for _ in range(8)]
            created = await asyncio.gather(
                *(
                    c.request("create_file", {"path": f"f{i}.py", "content": f"x = {i}"})
                    for c, i in batch
                )
            )
            assert all(created)
        expected = {f"f{i}.py": f"x = {i}" for i in range(64)}
        for client in (ann, bob):
            await eventually(lambda c=client: len(schema.files(c.doc)) == 64, what="the files")
            assert {p: str(t) for p, t in schema.files(client.doc).items()} == expected
        room = hub.room(name)
        assert room is not None
        clients = _state_vector_clients(room.doc.get_state())
        assert clients == 1, f"{clients} clients in the state vector of a room of 64 created files"
