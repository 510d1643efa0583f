"""The room schema every client (Python or Yjs) shares.

One ``Y.Doc`` per room. Its root ``Map`` named ``files`` maps a workspace-relative POSIX path
(``src/app.py``, no leading slash, no ``..``) to a ``Y.Text`` holding that file's content.
From Yjs: ``doc.getMap("files").get("src/app.py").toString()``.
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
