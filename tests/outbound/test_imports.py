"""The outbound and template modules import each other in one direction only (no circle, not even a lazy one)."""

from __future__ import annotations

import ast
from pathlib import Path

import maild

PACKAGE = Path(maild.__file__).resolve().parent
CHECKED = ("maild.outbound", "maild.templates")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every maild module -> the maild modules it imports anywhere in its body (function-level imports too)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                candidates = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            targets |= {candidate for candidate in candidates if candidate in modules}
        graph[name] = targets - {name}
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(graph[current])
    return seen


def test_no_outbound_or_template_module_is_part_of_an_import_circle() -> None:
    graph = import_graph()
    assert "maild.outbound.mailing" in graph and "maild.outbound.batch" in graph
    circles = sorted(name for name in graph if name.startswith(CHECKED) and name in reachable(graph, name))
    assert circles == []
