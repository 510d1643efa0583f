"""The browser client: the page at ``/<room>`` and its bundled assets under ``/_huddle/``.

The page's JavaScript is built at set-up time (editor-clients/web, esbuild: ``./dev setup``) into
``static/`` beside this module and shipped as package data, so the hub needs no Node at run time.
Without it the hub still serves rooms to editors; browsers get a 503 page naming ``./dev setup``.

The join link is ``http://host:port/<room>#token=...``: the fragment never reaches the server (nor
a Referer), so the page request carries no secret; the page opens its websocket to
``/<room>?token=...`` like any client, and the hub's logs redact query tokens.
"""

from __future__ import annotations

import email.utils
import gzip
import html
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

log = logging.getLogger("huddle.web")

STATIC = Path(__file__).with_name("static")
ASSET_PREFIX = "/_huddle/"  # a room name starts with a letter or digit: this is never a room
BUILD_HINT = "run ./dev setup (or `npm ci && npm run build` in editor-clients/web)"

# No third-party origin anywhere; connect-src 'self' covers ws: and wss: to the page's own host
# and port (CSP level 3, which Chromium, Firefox and Safari implement). The nonce lets CodeMirror
# add its <style> where constructed stylesheets are missing; style attributes stay forbidden.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_IMMUTABLE = "public, max-age=31536000, immutable"  # content-hashed names never change content

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{room} · Huddle</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{prefix}{style}">
<script defer nonce="{nonce}" src="{prefix}{script}"></script>
</head>
<body>
<header>
<span class="hd-brand">Huddle</span><span id="room"></span><span id="role"></span>
<span id="following"></span>
<span id="status" role="status" data-state="connecting">connecting…</span>
<button id="summarize-file" type="button" disabled>Summarize file</button>
<button id="catch-up" type="button">Catch me up</button>
</header>
<aside>
<h2>Files</h2><ul id="files"></ul>
<h2>Here</h2><ul id="people"></ul>
</aside>
<main>
<div id="file-name"></div><div id="notice" role="alert"></div><div id="editor"></div>
<section id="summary" aria-live="polite" hidden>
<div class="hd-summary-bar"><span id="summary-title"></span><span id="summary-status"></span>
<button id="summary-cancel" type="button">Cancel</button>
<button id="summary-close" type="button">Close</button></div>
<div id="summary-text"></div>
</section>
</main>
<noscript>This page needs JavaScript.</noscript>
</body>
</html>
"""

_MISSING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Huddle: web client not built</title></head>
<body><h1>The web client is not built</h1>
<p>This hub serves rooms to editors, but its browser client is missing ({problem}).
On the hub's machine, {hint}, then restart <code>huddle serve</code>.</p></body></html>
"""


@dataclass(frozen=True)
class _Asset:
    body: bytes
    content_type: str
    _gzipped: list[bytes] = field(default_factory=list, compare=False)

    def gzipped(self) -> bytes:
        """Compressed on first request, once (a wheel ships it plain)."""
        if not self._gzipped:
            self._gzipped.append(gzip.compress(self.body, 9, mtime=0))
        return self._gzipped[0]


@dataclass(frozen=True)
class _Bundle:
    script: str
    style: str
    assets: dict[str, _Asset]


def _load(static: Path) -> _Bundle:
    """The built bundle; ``OSError`` or ``ValueError`` saying what is missing."""
    manifest = json.loads((static / "manifest.json").read_text())
    names = {manifest["script"], manifest["style"]}
    assets = {}
    for path in static.iterdir():
        if path.suffix in _TYPES:
            assets[path.name] = _Asset(path.read_bytes(), _TYPES[path.suffix])
    if not names <= assets.keys():
        raise ValueError(f"manifest.json names {sorted(names - assets.keys())}, not in {static}")
    return _Bundle(manifest["script"], manifest["style"], assets)


class WebClient:
    """Answers the browser's plain HTTP requests; ``respond`` returns None for everything else
    (a websocket upgrade, or a path that is neither a room nor an asset)."""

    def __init__(self, static: Path = STATIC) -> None:
        self._static = static
        self._bundle: _Bundle | None = None
        self.problem: str | None = None
        self._try_load()
        if self.problem is not None:
            log.error(
                "the web client is not built (%s): %s; browsers get a 503", self.problem, BUILD_HINT
            )

    def _try_load(self) -> _Bundle | None:
        if self._bundle is None:
            try:
                self._bundle = _load(self._static)
                self.problem = None
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.problem = f"{type(exc).__name__}: {exc}"
        return self._bundle

    def respond(self, request: Request, room_of: Callable[[str], str | None]) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        path = urlsplit(request.path).path
        if path.startswith(ASSET_PREFIX):
            return self._asset(path.removeprefix(ASSET_PREFIX), request.headers)
        room = room_of(request.path)
        return None if room is None else self._page(room)

    def _page(self, room: str) -> Response:
        nonce = secrets.token_urlsafe(18)
        headers = _security_headers(nonce)
        headers["Cache-Control"] = "no-store"
        bundle = self._try_load()
        if bundle is None:
            body = _MISSING.format(problem=html.escape(self.problem or ""), hint=BUILD_HINT)
            return _response(
                HTTPStatus.SERVICE_UNAVAILABLE, headers, "text/html; charset=utf-8", body.encode()
            )
        body = _PAGE.format(
            room=html.escape(room),
            prefix=ASSET_PREFIX,
            script=bundle.script,
            style=bundle.style,
            nonce=nonce,
        )
        return _response(HTTPStatus.OK, headers, "text/html; charset=utf-8", body.encode())

    def _asset(self, name: str, request_headers: Headers) -> Response:
        bundle = self._try_load()
        asset = None if bundle is None else bundle.assets.get(name)
        headers = _security_headers(None)
        if asset is None:
            return _response(
                HTTPStatus.NOT_FOUND, headers, "text/plain; charset=utf-8", b"not found\n"
            )
        headers["Cache-Control"] = _IMMUTABLE
        headers["Vary"] = "Accept-Encoding"
        body = asset.body
        if "gzip" in request_headers.get("Accept-Encoding", ""):
            headers["Content-Encoding"] = "gzip"
            body = asset.gzipped()
        return _response(HTTPStatus.OK, headers, asset.content_type, body)


def _security_headers(nonce: str | None) -> Headers:
    headers = Headers()
    headers["Content-Security-Policy"] = _CSP.format(nonce=nonce) if nonce else "default-src 'none'"
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    return headers


def _response(status: HTTPStatus, headers: Headers, content_type: str, body: bytes) -> Response:
    headers["Date"] = email.utils.formatdate(usegmt=True)
    headers["Connection"] = "close"  # websockets answers one plain request per connection
    headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(body))
    return Response(status.value, status.phrase, headers, body)
