"""Huddle: real-time collaborative coding, with AI in the loop.

Run the hub with `huddle serve`, give teammates a join link with `huddle invite ROOM --user NAME`,
and open the workspace in an editor with Huddle's extension or plugin: the editor starts
`huddle lsp` itself."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pycrdt import Doc
from pydantic import ValidationError

from huddle.collab.schema import file_texts
from huddle.config import HuddleConfig
from huddle.protocol import RpcError, room_url, web_url
from huddle.server import logs
from huddle.server.auth import (
    DELEGATE,
    KEY_FILE,
    Role,
    TokenSigner,
    load_or_create_key,
    name_problem,
    rotate_key,
)
from huddle.server.datadir import read_owner
from huddle.server.hub import ROOM_NAME, Hub
from huddle.server.postgres import PostgresDatabase
from huddle.server.store import Database, SqlDatabase

_TTL = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_ttl(text: str) -> timedelta:
    match = _TTL.fullmatch(text.strip())
    try:
        if not match or int(match.group(1)) == 0:
            raise ValueError(text)
        ttl = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        datetime.now(UTC) + ttl  # an expiry a token can hold (not past the year 9999)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"invalid ttl {text!r}: use e.g. 30m, 12h, 7d, 2w"
        ) from None
    return ttl


def parse_room(text: str) -> str:
    if not ROOM_NAME.fullmatch(text) or ".." in text.split("/"):
        raise argparse.ArgumentTypeError(f"invalid room name {text!r}")
    return text


def parse_user(text: str) -> str:
    """A name for ``huddle invite``: printable (it reaches logs and editors), and without the
    separator the hub uses for invited guests (``ann/bob``), so an invite chain is never forged."""
    problem = name_problem(text)
    if problem is None and DELEGATE in text:
        problem = f"a user name cannot contain {DELEGATE!r} (it separates minter and guest)"
    if problem is not None:
        raise argparse.ArgumentTypeError(f"invalid user name {text!r}: {problem}")
    return text


def _storage(p: argparse.ArgumentParser) -> None:
    """Where a command finds the rooms and the signing key."""
    p.add_argument("--data-dir", type=Path, help="where rooms and the signing key live")
    p.add_argument(
        "--store",
        metavar="postgresql://...",
        help="a cluster's PostgreSQL: rooms and the signing key live there, and every hub "
        "started with the same URL serves them (default: SQLite in the data directory)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="huddle", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the hub")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    _storage(serve)
    serve.add_argument("--tls-cert", type=Path)
    serve.add_argument("--tls-key", type=Path)
    serve.add_argument(
        "--llm-url",
        action="append",
        help="an OpenAI-compatible server (vLLM) for AI features; repeat for replicas. "
        "Default: the embedded model",
    )
    serve.add_argument("--llm-model", help="the model the --llm-url servers serve")
    serve.add_argument("--log-format", choices=["text", "json"])
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    invite = sub.add_parser("invite", help="print a token and join link for a room")
    invite.add_argument("room", type=parse_room)
    invite.add_argument("--user", required=True, type=parse_user)
    invite.add_argument("--role", choices=[r.value for r in Role], default=Role.EDIT.value)
    invite.add_argument("--ttl", type=parse_ttl, default=parse_ttl("7d"))
    invite.add_argument(
        "--url",
        help="the hub's ws(s):// URL as teammates reach it (default: the address of the hub "
        "running on this data directory)",
    )
    _storage(invite)

    keys = sub.add_parser("keys", help="manage the hub's signing key")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    rotate = key_commands.add_parser(
        "rotate",
        help="replace the signing key: every token issued so far is refused, and a running hub "
        "closes the connections that hold one",
    )
    _storage(rotate)

    rooms = sub.add_parser("rooms", help="list stored rooms with file counts and sizes")
    _storage(rooms)
    _copy_rooms_parser(sub)

    lsp = sub.add_parser("lsp", help="the language server (stdio); editors start it")
    lsp.add_argument("--stdio", action="store_true", help="accepted for editors that pass it")
    lsp.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    return parser


def _copy_rooms_parser(sub: Any) -> None:
    copy = sub.add_parser(
        "copy-rooms",
        help="copy rooms (journal, history and all) from a data directory's SQLite store into "
        "a cluster's PostgreSQL",
    )
    copy.add_argument("rooms", nargs="*", type=parse_room, help="default: every room")
    copy.add_argument("--data-dir", type=Path, help="the hub's data directory to copy from")
    copy.add_argument("--store", required=True, metavar="postgresql://...")
    copy.add_argument(
        "--with-key",
        action="store_true",
        help="also make the data directory's signing key the cluster's, so the invites already "
        "given keep working (and every token of the cluster's old key is revoked)",
    )


def _config(args: argparse.Namespace) -> HuddleConfig:
    base = HuddleConfig()
    hub: dict[str, Any] = base.hub.model_dump()
    for field in ("host", "port", "data_dir", "tls_cert", "tls_key"):
        value = getattr(args, field, None)
        if value is not None:
            hub[field] = value
    if getattr(args, "url", None):
        hub["public_url"] = args.url
    if getattr(args, "store", None):
        hub["store"]["url"] = args.store
    if getattr(args, "llm_url", None):
        hub["llm"]["backends"] = [{"url": u, "model": args.llm_model} for u in args.llm_url]
    top = base.model_dump()
    for field in ("log_level", "log_format"):
        if getattr(args, field, None):
            top[field] = getattr(args, field)
    top["hub"] = hub
    return HuddleConfig.model_validate(top)


def _serve(config: HuddleConfig) -> int:
    logs.configure(config.log_level, config.log_format)

    async def run() -> None:
        async with Hub(config.hub) as hub:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, hub.stop)
            print(f"huddle hub on {hub.url}  (data: {config.hub.data_dir})", flush=True)
            preload = asyncio.create_task(_preload(hub)) if config.hub.llm.preload else None
            await hub.serve_forever()
            if preload is not None:
                preload.cancel()

    asyncio.run(run())
    return 0


async def _preload(hub: Hub) -> None:
    """Start the AI gateway in the background; the hub serves rooms meanwhile (and without it,
    if the model cannot start: completions then say why)."""
    try:
        gateway = await hub.ai.start()
    except RpcError as exc:
        print(f"AI: unavailable: {exc.message}", flush=True)
        return
    if gateway.embedded is not None:
        model = hub.config.llm.embedded.model_alias
        print(f"AI: embedded {model} on {gateway.embedded.url} (CPU)", flush=True)
    else:
        urls = ", ".join(b.url for b in gateway.backends)
        print(f"AI: {gateway.backends[0].model} on {urls}", flush=True)


def _lsp(config: HuddleConfig) -> int:
    from huddle.lsp.server import main as lsp_main

    logs.configure(config.log_level, "text")  # stderr: stdout carries the protocol
    logging.getLogger("pygls").setLevel(logging.WARNING)
    lsp_main()
    return 0


def _database(config: HuddleConfig) -> SqlDatabase:
    url = config.hub.store.url
    return Database.in_dir(config.hub.data_dir) if url is None else PostgresDatabase(url)


def _invite(config: HuddleConfig, args: argparse.Namespace) -> int:
    if config.hub.store.url is None:
        signer = TokenSigner.for_data_dir(config.hub.data_dir)
    else:
        db = PostgresDatabase(config.hub.store.url)
        try:
            signer = TokenSigner(db.signing_key())
        finally:
            db.close()
    token = signer.issue(args.room, args.user, Role(args.role), args.ttl)
    print(f"token: {token}")
    hub_url = _invite_url(config)
    print(f"join:  {room_url(hub_url, args.room, token)}")
    print(f"open in a browser: {web_url(hub_url, args.room, token)}")
    return 0


def _invite_url(config: HuddleConfig) -> str:
    """The hub address a join link names: --url (or the configured public URL), else where the
    hub on this data directory says it listens (it may run on another port than the default),
    else the configured address, with a warning that it is a guess."""
    if config.hub.public_url:
        return config.hub.url()
    owner = read_owner(config.hub.data_dir)
    if owner is not None:
        return owner.url
    url = config.hub.url()
    print(
        f"huddle invite: no hub is running on {config.hub.data_dir}, so the link assumes {url}; "
        "pass --url with the address teammates reach",
        file=sys.stderr,
    )
    return url


def _rotate_keys(config: HuddleConfig) -> int:
    seconds = config.hub.key_check_seconds
    if config.hub.store.url is not None:
        db = PostgresDatabase(config.hub.store.url)
        try:
            db.rotate_signing_key()
        finally:
            db.close()
        print("new signing key written to the cluster's database")
        print(
            "every token issued before is revoked; every hub of the cluster closes the "
            f"connections holding one within {seconds:g}s. Issue new invites with `huddle invite`."
        )
        return 0
    data_dir = config.hub.data_dir
    rotate_key(data_dir)
    print(f"new signing key written to {data_dir / KEY_FILE}")
    print(
        "every token issued before is revoked; a running hub on this data directory closes "
        f"the connections holding one within {seconds:g}s. Issue new invites with `huddle invite`."
    )
    return 0


def _rooms(config: HuddleConfig) -> int:
    db = _database(config)
    try:
        infos = db.rooms()
        if not infos:
            where = config.hub.store.url or config.hub.data_dir
            print(f"no rooms in {where}")
            return 0
        print(f"{'room':30} {'files':>5} {'bytes':>10}  last edit")
        for info in infos:
            record = db.load_room(info.name, create=False)
            doc: Doc[Any] = Doc()
            if record is not None:
                for update in ([record.snapshot] if record.snapshot else []) + record.log:
                    doc.apply_update(update)
            texts = file_texts(doc)
            size = sum(len(t.encode()) for t in texts.values())
            last = "-" if info.last_update is None else _ago(info.last_update)
            print(f"{info.name:30} {len(texts):>5} {size:>10}  {last}")
    finally:
        db.close()
    return 0


def _copy_rooms(config: HuddleConfig, args: argparse.Namespace) -> int:
    url = config.hub.store.url
    assert url is not None  # --store is required
    source, target = Database.in_dir(config.hub.data_dir), PostgresDatabase(url)
    failed = 0
    try:
        for name in args.rooms or [info.name for info in source.rooms()]:
            room = source.export_room(name)
            if room is None:
                print(f"{name}: no such room in {config.hub.data_dir}", file=sys.stderr)
                failed += 1
            elif not target.import_room(room):
                print(
                    f"{name}: the cluster already has a room of that name; left as is",
                    file=sys.stderr,
                )
                failed += 1
            else:
                print(
                    f"{name}: copied {len(room.updates)} updates, "
                    f"{len(room.history)} history points"
                )
        if args.with_key:
            target.rotate_signing_key(load_or_create_key(config.hub.data_dir))
            print("the data directory's signing key is now the cluster's")
    finally:
        source.close()
        target.close()
    return 1 if failed else 0


def _ago(ts: float) -> str:
    import time

    seconds = int(time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "llm_url", None) and not args.llm_model:
        parser.error("--llm-url needs --llm-model (the model those servers serve)")
    try:
        config = _config(args)
    except ValidationError as exc:
        print(f"huddle: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return _serve(config)
    if args.command == "lsp":
        return _lsp(config)
    if args.command == "invite":
        return _invite(config, args)
    if args.command == "keys":
        return _rotate_keys(config)
    if args.command == "copy-rooms":
        return _copy_rooms(config, args)
    return _rooms(config)


if __name__ == "__main__":
    sys.exit(main())
