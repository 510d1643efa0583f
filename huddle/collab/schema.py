"""The room schema every client (Python or Yjs) shares.

One ``Y.Doc`` per room. Its root ``Map`` named ``files`` maps a workspace-relative POSIX path
(``src/app.py``, no leading slash, no ``..``) to a ``Y.Text`` holding that file's content.
From Yjs: ``doc.getMap("files").get("src/app.py").toString()``.

Anything else a client puts in the doc (a ``Y.Map`` under ``files``, other root types) is kept
and relayed but never read by the hub: only ``Text`` values are (``str()`` of a deeply nested
map overflows the native stack). The hub refuses updates that nest shared types, or arrays and
objects in values, deeper than ``Limits.max_nesting_depth`` (32).
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Map, Text

FILES = "files"


def files(doc: Doc[Any]) -> Map[Text]:
    root: Map[Text] = doc.get(FILES, type=Map)
    return root


def file_texts(doc: Doc[Any]) -> dict[str, str]:
    """Every file of the room as plain text, keyed by path."""
    result: dict[str, str] = {}
    for path, value in files(doc).items():
        if isinstance(value, Text):
            result[path] = str(value)
    return result
