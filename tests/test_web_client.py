"""The browser client the hub serves (huddle/server/web, editor-clients/web) in a real headless
chromium, against a real hub, with real peers: a stock Node Yjs client and a `huddle lsp` driven
by the scripted LSP editor. The page is read from its DOM and typed into with the keyboard."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from lsprotocol import types as lsp
from pycrdt import Text

from huddle.collab.schema import file_texts, files
from huddle.lsp.hub_client import HubClient
from huddle.protocol import Command, HubMethod, InviteParams, InviteResult, room_url, web_url
from huddle.server.hub import Hub
from huddle.server.web import WebClient
from tests.support.browser import Browser
from tests.support.lsp_editor import Editor
from tests.support.peers import HubProcess, NodeClient, eventually, free_port, token

ROOM = "acme/webapp"
CSP = (
    "default-src 'none'",
    "script-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
)


def _hub_text(hub: Hub, path: str) -> str | None:
    room = hub.room(ROOM)
    return None if room is None else file_texts(room.doc).get(path)


async def _seeded(client: NodeClient, contents: dict[str, str]) -> None:
    await client.wait_event("synced")
    for path, text in contents.items():
        await client.request("insert", file=path, index=0, text=text)


def _lsp_options(hub: Hub, data_dir: Path, user: str) -> dict[str, str]:
    return {"hub": hub.url, "room": ROOM, "user": user, "token": token(data_dir, ROOM, user)}


async def test_the_invite_link_opens_the_room_in_a_browser(data_dir: Path) -> None:
    """The hub's INVITE (what the editors' Share command calls) returns a browser link; the page
    shows the room's files live, under a strict CSP, and the token reaches no log, no Referer
    and no address bar."""
    ann_token = token(data_dir, ROOM, "ann")
    async with (
        HubProcess(data_dir, None, "--log-level", "debug") as hub,
        NodeClient(hub.url, ROOM, ann_token) as node,
        HubClient(hub.url, ROOM, ann_token) as ann,
        Browser() as browser,
    ):
        await _seeded(node, {"src/app.py": "print('héllo 😀')\n", "README.md": "# Web\n"})
        await asyncio.wait_for(ann.synced.wait(), 15)
        invite = await ann.call(HubMethod.INVITE, InviteParams(user="gus"), InviteResult)
        assert invite.url == room_url(hub.url, ROOM, invite.token)  # what editors parse: kept
        assert invite.web_url == web_url(hub.url, ROOM, invite.token)
        assert invite.web_url.startswith(f"http://127.0.0.1:{hub.port}/acme/webapp#token=")

        opened = await browser.open("gus", invite.web_url)
        assert opened["status"] == 200
        headers = opened["headers"]
        csp = headers["content-security-policy"]
        assert all(directive in csp for directive in CSP), csp
        assert re.search(r"style-src 'self' 'nonce-[\w-]{16,}'", csp), csp
        assert "unsafe" not in csp and "http" not in csp  # no third-party origin, no loophole
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"

        shown = await browser.wait(
            "gus",
            "the tree, the first file and connected",
            lambda s: (
                s["status"] == "connected"
                and sorted(s["files"]) == ["README.md", "src/app.py"]
                and s["text"] == "# Web\n"
            ),
        )
        assert shown["people"][0]["name"] == "ann/gus"  # the name the hub stamps: the token's
        await browser.request("clickFile", page="gus", path="src/app.py")
        await browser.wait("gus", "app.py", lambda s: s["text"] == "print('héllo 😀')\n")

        # Live: a file added appears, a file removed disappears.
        files(ann.doc)["docs/new.md"] = Text("new\n")
        await browser.wait("gus", "new.md listed", lambda s: "docs/new.md" in s["files"])
        del files(ann.doc)["README.md"]
        await browser.wait(
            "gus", "README.md gone", lambda s: sorted(s["files"]) == ["docs/new.md", "src/app.py"]
        )

        shown = await browser.state("gus")
        assert shown["errors"] == []  # a CSP violation is a console error
        assert "token" not in shown["address"]  # taken out of the address bar
        requests = shown["requests"]
        assert not [r for r in requests if r["referer"]], requests
        with_token = [r["url"] for r in requests if invite.token in r["url"]]
        assert with_token == [room_url(hub.url, ROOM, invite.token)], requests
        asset = next(r["url"] for r in requests if "/_huddle/" in r["url"] and ".js" in r["url"])
        async with httpx.AsyncClient() as http:
            response = await http.get(asset)
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["content-encoding"] == "gzip"
    log = hub.log()
    assert "joined acme/webapp" in log and "ann/gus" in log  # the log did record the page
    assert invite.token not in log and ann_token not in log


async def test_a_hub_without_the_bundle_says_how_to_build_it(
    hub: Hub, data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No crash and no silent 404: a log line and a 503 page naming ./dev setup; editors are
    served as before."""
    with caplog.at_level(logging.ERROR, logger="huddle.web"):
        hub.web = WebClient(tmp_path / "no-bundle")
    assert any("./dev setup" in r.getMessage() for r in caplog.records), caplog.records
    base = hub.url.replace("ws://", "http://")
    async with httpx.AsyncClient() as http:
        page = await http.get(f"{base}/{ROOM}")
    assert page.status_code == 503 and "./dev setup" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    async with HubClient(hub.url, ROOM, token(data_dir, ROOM, "ann")) as ann:
        await asyncio.wait_for(ann.synced.wait(), 15)


def _tokens(tag: str, count: int) -> list[str]:
    return [f"⟦{tag}{i} é中😀⟧\n" for i in range(count)]


async def test_page_node_and_editor_typing_at_once_converge(
    hub: Hub, data_dir: Path, tmp_path: Path
) -> None:
    """The page typing with the keyboard into CodeMirror, a Node Yjs client and a `huddle lsp`
    (scripted editor) type unique tokens, with non-ASCII and line breaks, into one file at once:
    every token exactly once in the page, the editor, the Node client and the hub."""
    root = tmp_path / "ws"
    root.mkdir()
    path, start = "notes.txt", "start\n"
    async with (
        NodeClient(hub.url, ROOM, token(data_dir, ROOM, "nod")) as node,
        Editor(root, init_options=_lsp_options(hub, data_dir, "ed")) as editor,
        Browser() as browser,
    ):
        await _seeded(node, {path: start})
        editor.open(path, start)
        await browser.open("pam", web_url(hub.url, ROOM, token(data_dir, ROOM, "pam")))
        await browser.wait("pam", "the file", lambda s: s["text"] == start)
        await browser.request("focusEnd", page="pam")
        # The page types at the end, alone there (its tokens go in a key at a time); the Node
        # client and the editor insert whole tokens at the start, racing each other.
        page, nodes, edits = _tokens("p", 5), _tokens("n", 5), _tokens("e", 5)
        for mine, theirs, the_editors in zip(page, nodes, edits, strict=True):
            editor.type(path, 0, the_editors)
            await asyncio.gather(
                browser.request("type", page="pam", text=mine),
                node.request("insert", file=path, index=0, text=theirs),
            )
        await editor.flush()

        everyone = [*page, *nodes, *edits]
        seen: dict[str, Any] = {}

        async def converged() -> bool:
            seen["page"] = (await browser.state("pam"))["text"]
            seen["node"] = (await node.files())[path]
            seen["editor"] = editor.text(path)
            seen["hub"] = _hub_text(hub, path)
            return len(set(seen.values())) == 1 and all(seen["hub"].count(t) == 1 for t in everyone)

        try:
            await eventually(converged, timeout=30, what="page, node, editor and hub converge")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {seen}") from None
        text = seen["hub"]
        assert text.endswith("start\n" + "".join(page))  # the page's tokens in the order typed
        assert (await browser.state("pam"))["errors"] == []


async def test_presence_both_ways_and_follow(hub: Hub, data_dir: Path, tmp_path: Path) -> None:
    """The page draws an editor's cursor at the right character (the editor counts UTF-8 bytes,
    the page UTF-16 units); the editor's huddle/peers shows the page's user where it typed; the
    page follows the editor from file to file."""
    root = tmp_path / "ws"
    root.mkdir()
    a, b = "é😀 = 1\nxyz\n", "b = 2\n"
    async with (
        Editor(root, encoding="utf-8", init_options=_lsp_options(hub, data_dir, "ann")) as ann,
        Browser() as browser,
    ):
        ann.open("a.py", a)
        ann.open("b.py", b)
        await eventually(lambda: _hub_text(hub, "b.py") == b, what="ann shares both files")

        async def ann_bound_both() -> bool:  # not just the hub: her cursor goes to b.py then
            status = await ann.client.workspace_execute_command_async(
                lsp.ExecuteCommandParams(command=Command.STATUS)
            )
            return bool(status["shared"] == ["a.py", "b.py"])

        await eventually(ann_bound_both, what="ann's huddle lsp shares both files")

        def cursor(path: str, line: int, character: int) -> None:
            ann.client.protocol.notify(
                "huddle/cursor",
                {"uri": ann.uri(path), "position": {"line": line, "character": character}},
            )

        cursor("a.py", 0, 6)  # after "é😀": 6 bytes, 3 UTF-16 units
        await browser.open("bea", web_url(hub.url, ROOM, token(data_dir, ROOM, "bea")))
        shown = await browser.wait(
            "bea",
            "ann's cursor after é😀",
            lambda s: (
                s["current"] == "a.py"  # the page opens the file a teammate is in
                and {"name": "ann", "line": 0, "column": 3} in s["carets"]
            ),
        )
        assert {"name": "ann", "file": "a.py", "following": False} in shown["people"]

        await browser.request("focusEnd", page="bea")
        await browser.request("type", page="bea", text="zé")

        def sees_bea() -> bool:
            notes = ann.notifications.get("huddle/peers", [])
            for peer in notes[-1].peers if notes else []:
                if peer.name == "bea" and getattr(peer, "position", None) is not None:
                    return (peer.file, peer.position.line, peer.position.character) == (
                        "a.py",
                        2,
                        3,  # "zé": 3 bytes
                    )
            return False

        try:
            await eventually(sees_bea, what="ann's editor shows bea after what she typed")
        except AssertionError:
            last = ann.notifications.get("huddle/peers", [])[-3:]
            raise AssertionError(f"ann's editor's last huddle/peers: {last}") from None
        assert ann.text("a.py") == a + "zé"

        # Follow ann: the page opens the files she moves to, and keeps following.
        await browser.request("clickPerson", page="bea", name="ann")
        await browser.wait("bea", "following ann", lambda s: s["following"] == "following ann")
        cursor("b.py", 0, 1)
        await browser.wait(
            "bea",
            "b.py shown, ann's cursor in it",
            lambda s: (
                s["current"] == "b.py" and {"name": "ann", "line": 0, "column": 1} in s["carets"]
            ),
        )
        cursor("a.py", 1, 2)
        await browser.wait(
            "bea",
            "back in a.py with ann",
            lambda s: (
                s["current"] == "a.py" and {"name": "ann", "line": 1, "column": 2} in s["carets"]
            ),
        )
        # Choosing a file yourself stops following.
        await browser.request("clickFile", page="bea", path="b.py")
        cursor("a.py", 0, 0)
        shown = await browser.wait(
            "bea", "not following", lambda s: s["following"] == "" and s["current"] == "b.py"
        )
        assert shown["errors"] == []


async def test_a_read_only_guest_cannot_type(hub: Hub, data_dir: Path) -> None:
    async with (
        NodeClient(hub.url, ROOM, token(data_dir, ROOM, "ann")) as node,
        Browser() as browser,
    ):
        await _seeded(node, {"ro.txt": "fixed\n"})
        link = web_url(hub.url, ROOM, token(data_dir, ROOM, "rita", role="read"))
        await browser.open("rita", link)
        shown = await browser.wait("rita", "the file", lambda s: s["text"] == "fixed\n")
        assert shown["readOnly"] is True
        await browser.request("focusEnd", page="rita")
        await browser.request("type", page="rita", text="nope\n")
        await browser.request("press", page="rita", key="Backspace")
        # A later edit from ann arrives: whatever the keys did would have been shown before it.
        await node.request("append", file="ro.txt", text="ann\n")
        await browser.wait("rita", "ann's line", lambda s: s["text"] == "fixed\nann\n")
        assert _hub_text(hub, "ro.txt") == "fixed\nann\n"
        assert (await node.files())["ro.txt"] == "fixed\nann\n"


async def test_reconnect_after_the_hub_restarts(data_dir: Path) -> None:
    """The indicator goes reconnecting (offline while the browser has no network), then
    connected; what the page and a teammate typed while the hub was down merges once it is
    back."""
    port = free_port()
    page_token = token(data_dir, ROOM, "bea")
    async with Browser() as browser:
        first = HubProcess(data_dir, port)
        await first.start()
        try:
            async with NodeClient(first.url, ROOM, token(data_dir, ROOM, "ann")) as node:
                await _seeded(node, {"r.txt": "one\n"})
                await browser.open("bea", web_url(first.url, ROOM, page_token))
                await browser.wait(
                    "bea",
                    "connected",
                    lambda s: s["status"] == "connected" and s["text"] == "one\n",
                )
                await first.kill()
                await browser.wait("bea", "reconnecting", lambda s: s["status"] == "reconnecting")
                # The browser loses its network too: offline, then trying again once it is back.
                await browser.request("offline", page="bea", offline=True)
                await browser.wait("bea", "offline", lambda s: s["status"] == "offline")
                await browser.request("offline", page="bea", offline=False)
                await browser.wait("bea", "reconnecting", lambda s: s["status"] == "reconnecting")
                await browser.request("focusEnd", page="bea")
                await browser.request("type", page="bea", text="offline é\n")
                await node.request("insert", file="r.txt", index=0, text="ann 中\n")
                async with HubProcess(data_dir, port) as second:
                    await browser.wait(
                        "bea", "connected again", lambda s: s["status"] == "connected"
                    )
                    expected = "ann 中\none\noffline é\n"
                    await browser.wait("bea", "both merged", lambda s: s["text"] == expected)
                    async with NodeClient(second.url, ROOM, token(data_dir, ROOM, "cy")) as cy:
                        await cy.wait_event("synced")
                        await eventually(
                            lambda: _files_are(cy, {"r.txt": expected}), what="the hub has both"
                        )
                logs = first.log() + second.log()
        finally:
            if first.proc is not None and first.proc.returncode is None:
                await first.kill()
    assert "joined acme/webapp" in logs and page_token not in logs


async def _files_are(client: NodeClient, expected: dict[str, str]) -> bool:
    return await client.files() == expected
