"""`maild rules ...`: the workflow rules in `rules.dir` (docs/rules.md).

This module owns the `rules` group and `check`; other modules add their commands to the same group.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from maild.cli.context import AppContext, pass_app


@click.group()
def rules() -> None:
    """Workflow rules (rules/*.yaml): check them, see what they did, simulate them over history.

    \b
    Reference: docs/rules.md. `maild run` refuses to start with invalid rules and, on SIGHUP,
    re-reads them (keeping the last good set when the new files have errors).
    """


@rules.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Rules folder (default: rules.dir of the config, relative to the config file).")
@pass_app
def check(app: AppContext, directory: Path | None) -> None:
    """Validate every rule file (*.yaml, *.yml) without running anything.

    Checks the schema, triggers (event types, cron expressions, sweeps), durations, expressions (syntax,
    and that every name and function exists for the rule's trigger) and that each template a `send` names
    exists in outbound.templates_dir. Prints every problem as FILE:LINE:COLUMN: key.path: what was
    expected, and exits 1 if there is any; otherwise one line per rule: its name, trigger and file.
    """
    from maild.config import resolve_path
    from maild.rules.loader import load_rules
    from maild.rules.model import RuleErrors
    from maild.rules.summary import trigger_summary

    config = app.config
    folder = directory if directory is not None else config.rules_dir
    templates = resolve_path(config.base_dir, config.outbound.templates_dir)
    try:
        ruleset = load_rules(folder, timezone=config.rules.timezone, templates_dir=templates,
                             webhook_secrets=config.rules.webhook_secrets)
    except RuleErrors as exc:
        for error in exc.errors:
            click.echo(str(error), err=True)
        click.echo(f"{len(exc.errors)} error(s) in {_shown(folder)}/", err=True)
        sys.exit(1)
    files, count = len(ruleset.files), len(ruleset.rules)
    note = "" if folder.is_dir() else " (the folder does not exist)"
    click.echo(f"{_shown(folder)}/: {files} file{'s' * (files != 1)}, {count} rule{'s' * (count != 1)} OK{note} "
               f"(timezone {ruleset.timezone})")
    width = max((len(rule.name) for rule in ruleset.rules), default=0)
    for rule in ruleset.rules:
        disabled = "  [disabled]" if not rule.enabled else ""
        click.echo(f"  {rule.name:<{width}}  {trigger_summary(rule.trigger):<42}  {rule.file}{disabled}")


def _shown(path: Path) -> str:
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def _add_history_commands() -> None:
    from maild.cli.rules_history import COMMANDS
    from maild.cli.rules_why import why_command

    for command in (*COMMANDS, why_command):
        rules.add_command(command)


_add_history_commands()
