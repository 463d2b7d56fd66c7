"""`maild` imports from its runtime dependencies alone (not the test extra), each module on its own.

The quick half of scripts/check-install (which installs without extras into a fresh venv, imports every module
and runs the daemon): the imports of every file are read (also those inside functions) and checked against the
runtime dependencies; then every module is imported in name order.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; (]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _runtime_closure() -> set[str]:
    """The runtime dependencies of pyproject.toml and everything they require (without their extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pending = [_name(d) for d in project["dependencies"]]
    closure: set[str] = set()
    while pending:
        name = pending.pop()
        if name in closure:
            continue
        closure.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        pending += [_name(r) for r in requirements if "extra ==" not in r.replace('"', "").replace("'", "")]
    return closure


def _third_party_imports() -> dict[str, list[str]]:
    """Top-level module -> where maild imports it (file:line)."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "maild").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "maild" and top not in sys.stdlib_module_names:
                    found.setdefault(top, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_import_of_maild_is_a_runtime_dependency() -> None:
    closure = _runtime_closure()
    distributions = metadata.packages_distributions()
    missing = {}
    for module, places in _third_party_imports().items():
        provided_by = {_name(d) for d in distributions.get(module, [])}
        if not provided_by & closure:
            missing[module] = f"{module} (from {', '.join(sorted(provided_by)) or 'nothing installed'}): {places[0]}"
    assert not missing, ("maild imports modules that `pip install maild` does not install (add them to "
                         "pyproject.toml's dependencies):\n" + "\n".join(missing.values()))


def test_every_module_of_maild_imports_whichever_comes_first() -> None:
    """Each module in name order, in a fresh interpreter (as scripts/check-install does): no module may depend on
    another having been imported before it (maild.cli.business used to hit a circular import of maild.cli.main)."""
    script = """
import importlib, pkgutil, maild
for module in pkgutil.walk_packages(maild.__path__, "maild."):
    if not module.name.endswith(".__main__"):
        importlib.import_module(module.name)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
