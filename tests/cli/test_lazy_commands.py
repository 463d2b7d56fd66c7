"""The command tree: subcommand modules are imported only when used, each on its own, and never import
maild.cli.main (the import circle that made the order of imports matter)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import maild.cli
from maild.cli.lazy import LazyGroup
from maild.cli.main import LAZY_COMMANDS, cli

CLI_DIR = Path(maild.cli.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_module_of_the_cli_imports_the_main_module() -> None:
    offenders = [p.name for p in sorted(CLI_DIR.glob("*.py"))
                 if p.name != "main.py" and "maild.cli.main" in _imported_modules(p)]
    assert offenders == [], "take AppContext, pass_app, parse_since from maild.cli.context"


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_each_lazy_command_loads_under_its_name(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert isinstance(command, click.Command) and command.name == name
    assert not (command.help or "").startswith("(unavailable"), command.help


def test_every_command_defined_in_the_cli_is_reachable_from_maild() -> None:
    """A command written but not registered (a line in LAZY_COMMANDS, or added to its group) is found here."""
    reachable: set[int] = set()

    def walk(command: click.Command, ctx: click.Context) -> None:
        reachable.add(id(command))
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                walk(sub, click.Context(sub, parent=ctx, info_name=name))

    walk(cli, click.Context(cli, info_name="maild"))
    defined = {f"{module.__name__}.{name}": value
               for module in (importlib.import_module(f"maild.cli.{p.stem}") for p in sorted(CLI_DIR.glob("*.py")))
               for name, value in vars(module).items() if isinstance(value, click.Command)}
    assert defined, "the walk found the cli's modules"
    assert sorted(name for name, command in defined.items() if id(command) not in reachable) == []


def test_starting_imports_no_subcommand_module() -> None:
    script = ("import sys\nfrom maild.cli.main import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n"
              "    pass\nprint(sorted(m for m in sys.modules if m.startswith('maild.cli.')))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    loaded = eval(result.stdout.strip().splitlines()[-1])
    assert set(loaded) <= {"maild.cli.context", "maild.cli.lazy", "maild.cli.main"}, loaded


def test_a_command_that_cannot_be_imported_breaks_only_itself() -> None:
    @click.group(cls=LazyGroup, lazy_commands={"good": "maild.cli.triage:explain",
                                               "broken": "maild.cli.no_such_module:command",
                                               "wrong": "maild.cli.context:parse_since"})
    def group() -> None:
        """A group with a broken command."""

    runner = CliRunner()
    listing = runner.invoke(group, ["--help"])
    assert listing.exit_code == 0
    assert "broken  (unavailable: run it for why)" in listing.output
    assert "wrong   (unavailable: run it for why)" in listing.output
    assert "good    Why MESSAGE was matched" in listing.output
    assert runner.invoke(group, ["good", "--help"]).exit_code == 0
    failed = runner.invoke(group, ["broken", "--some-option", "x"])
    assert failed.exit_code == 1 and failed.exception is not None and isinstance(failed.exception, SystemExit)
    assert "Error: the broken command cannot be loaded (ModuleNotFoundError: No module named " in failed.stderr
    wrong = runner.invoke(group, ["wrong"])
    assert wrong.exit_code == 1 and "(maild.cli.context:parse_since is not a click command)" in wrong.stderr
