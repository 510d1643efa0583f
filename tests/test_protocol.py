"""The contract (huddle/protocol.py) is the one place names and shapes are spelled: the VS Code
extension's protocol.ts, the Neovim plugin and huddle.el agree with it, and nothing else in
huddle/ spells a method name."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from huddle import protocol
from tests.support.peers import ROOT

PROTOCOL_TS = ROOT / "editor-clients" / "vscode" / "src" / "core" / "protocol.ts"
LUA = ROOT / "editor-clients" / "neovim" / "lua"
ELISP = ROOT / "editor-clients" / "emacs" / "huddle.el"

# protocol.ts interface -> the model it mirrors
INTERFACES: dict[str, type[BaseModel]] = {
    "Position": protocol.LspPosition,
    "Range": protocol.LspRange,
    "Status": protocol.EditorStatus,
    "AcceptanceStats": protocol.AcceptanceStats,
    "Peer": protocol.Peer,
    "PeersParams": protocol.PeersParams,
    "CursorParams": protocol.CursorParams,
    "InlinePartialParams": protocol.InlinePartialParams,
    "SummaryPartialParams": protocol.SummaryPartialParams,
    "SummaryFile": protocol.FileSummary,
    "SummaryResult": protocol.SummaryCommandResult,
    "InviteParams": protocol.InviteParams,
    "InviteResult": protocol.InviteResult,
}


def _ts_interfaces(source: str) -> dict[str, dict[str, bool]]:
    """interface name -> {field: optional}."""
    found: dict[str, dict[str, bool]] = {}
    for match in re.finditer(r"export interface (\w+) \{(.*?)\n\}", source, re.S):
        body = re.sub(r"/\*.*?\*/|//[^\n]*", "", match.group(2), flags=re.S)
        fields = re.findall(r"^\s*(\w+)(\??):", body, re.M)
        found[match.group(1)] = {name: bool(optional) for name, optional in fields}
    return found


def _wire_fields(model: type[BaseModel]) -> dict[str, bool]:
    """field name on the wire -> whether it may be absent."""
    return {
        (info.alias or name): not info.is_required() for name, info in model.model_fields.items()
    }


@pytest.mark.parametrize("interface", list(INTERFACES))
def test_protocol_ts_mirrors_the_models(interface: str) -> None:
    ts = _ts_interfaces(PROTOCOL_TS.read_text())
    assert interface in ts, f"protocol.ts has no interface {interface}"
    model = INTERFACES[interface]
    python = _wire_fields(model)
    assert set(ts[interface]) == set(python), (
        f"{interface}: only in protocol.ts {set(ts[interface]) - set(python)}, "
        f"only in {model.__name__} {set(python) - set(ts[interface])}"
    )
    # huddle lsp sends only what it set: what it may leave out, the extension must not take
    # for granted.
    if interface in ("Status", "Peer"):
        for name, optional in python.items():
            assert ts[interface][name] or not optional, f"{interface}.{name} may be absent"


def test_protocol_ts_names_are_the_contracts() -> None:
    source = PROTOCOL_TS.read_text()
    consts = dict(re.findall(r"export const (\w+) = '([^']+)';", source))
    assert set(consts.values()) <= {n.value for n in protocol.EditorNotification}, consts
    block = re.search(r"export const Command = \{(.*?)\} as const;", source, re.S)
    assert block is not None
    commands = set(re.findall(r"'(huddle\.\w+)'", block.group(1)))
    assert commands == {c.value for c in protocol.Command}


def _names_in(text: str) -> set[str]:
    return set(re.findall(r"""["'](huddle[/.][a-z]\w*)["']""", text))


def test_the_neovim_plugin_and_huddle_el_use_only_the_contracts_names() -> None:
    known = {n.value for n in protocol.EditorNotification} | {c.value for c in protocol.Command}
    lua = set().union(*(_names_in(p.read_text()) for p in LUA.rglob("*.lua")))
    # Lua's require paths (huddle.editor, huddle/...) are module names, not protocol names.
    modules = {f"huddle.{p.stem}" for p in (LUA / "huddle").glob("*.lua")} | {"huddle.toml"}
    used = {n for n in lua if n not in modules}
    assert used and used <= known, f"unknown names in the Neovim plugin: {used - known}"
    elisp = set(re.findall(r"[:'\"](huddle/\w+)", ELISP.read_text()))
    assert elisp and elisp <= known, f"unknown names in huddle.el: {elisp - known}"


def test_no_module_but_the_contract_spells_a_method_name() -> None:
    names = {
        m.value
        for enum in (
            protocol.HubMethod,
            protocol.HubNotification,
            protocol.EditorNotification,
            protocol.Command,
        )
        for m in enum
    }
    bare = {m.value for m in protocol.HubMethod}  # `huddle invite` is also a CLI command
    spelled = []
    for path in sorted((ROOT / "huddle").rglob("*.py")):
        if path.name == "protocol.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if path.name == "cli.py" and getattr(node, "value", None) in bare:
                continue
            if isinstance(node, ast.Constant) and node.value in names:
                spelled.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not spelled, "spell these through huddle.protocol: " + ", ".join(spelled)


def test_every_hub_method_has_its_models_and_notifications() -> None:
    assert set(protocol.HUB_METHODS) == set(protocol.HubMethod)
    notifications = {n for spec in protocol.HUB_METHODS.values() for n in spec.notifications}
    assert notifications == set(protocol.HubNotification) == set(protocol.HUB_NOTIFICATIONS)


def test_the_editor_wire_omits_what_was_not_set() -> None:
    """Lua reads a JSON null as true: an absent cursor must be absent, not null."""
    from huddle.lsp.workspace import dump

    peer = protocol.Peer(client_id=3, name="ann", color="#fff", file=None, uri=None)
    assert dump(peer) == {"clientId": 3, "name": "ann", "color": "#fff", "file": None, "uri": None}


def test_paths_exist() -> None:
    for path in (PROTOCOL_TS, LUA, ELISP):
        assert Path(path).exists(), path
