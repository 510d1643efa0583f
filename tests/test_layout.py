"""The shape of the package, as the README's "How it is built" states it: no import cycle, the
dependency direction between the parts, and functions short enough to read at a glance."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.peers import ROOT

PACKAGE = ROOT / "huddle"
MAX_LINES = 60
REASON = "Long:"  # a longer function says why in its docstring, after this word


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the huddle modules it imports, including under TYPE_CHECKING (a cycle there
    is still two modules that need each other to be understood)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle() -> None:
    assert _cycles(_imports(_modules())) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "huddle"


# part -> the other parts it may import
ALLOWED = {
    "protocol": set(),
    "collab": set(),
    "llm": set(),
    "server": {"collab", "llm", "protocol", "config"},
    "lsp": {"collab", "llm", "protocol", "config"},
    "config": {"server", "llm"},  # the one settings model nests the hub's and the model's
    "cli": {"collab", "lsp", "server", "llm", "protocol", "config"},
    "huddle": set(),  # the package itself (its version): anyone may read it
}
# lsp reaches a hub over the wire; solo mode starts one in-process through this one entry.
NARROW_ENTRIES = {("lsp", "huddle.server.solo")}


def test_dependency_direction() -> None:
    wrong = []
    for module, deps in _imports(_modules()).items():
        part = _part(module)
        for dep in deps:
            other = _part(dep)
            if other in (part, "huddle") or other in ALLOWED[part] or (part, dep) in NARROW_ENTRIES:
                continue
            wrong.append(f"{module} imports {dep}")
    assert not wrong, "\n".join(sorted(wrong))


def test_functions_are_short_or_say_why() -> None:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_LINES and REASON not in (ast.get_docstring(node) or ""):
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, "\n".join(long)
