"""A click group whose subcommands are imported only when used (or listed by --help), each on its own."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click


class LazyGroup(click.Group):
    """`lazy_commands` maps a command name to "module:attribute" (a click command or group). The module is imported
    the first time the command is looked up, so startup imports none of them and a module that fails to import
    breaks only its own command: --help lists it as unavailable, running it says why."""

    def __init__(self, *args: Any, lazy_commands: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in self.lazy_commands:
            return super().get_command(ctx, cmd_name)
        try:
            command = load_command(self.lazy_commands[cmd_name])
        except CommandUnavailable as exc:
            return _unavailable(cmd_name, exc)
        self.add_command(command, cmd_name)
        return command


class CommandUnavailable(Exception):
    """A lazily registered command could not be imported."""


def load_command(target: str) -> click.Command:
    """The click command at "module:attribute"; CommandUnavailable (with the reason) when it cannot be had."""
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        command = getattr(module, attribute)
    except Exception as exc:  # an import error of one command must not take the others down
        raise CommandUnavailable(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(command, click.Command):
        raise CommandUnavailable(f"{target} is not a click command")
    return command


def _unavailable(name: str, reason: CommandUnavailable) -> click.Command:
    """A stand-in that lists as unavailable and fails with the reason when run."""

    def fail() -> None:
        raise click.ClickException(f"the {name} command cannot be loaded ({reason}); is maild installed completely?")

    return click.Command(name, callback=fail, help=f"(unavailable: {reason})",
                         short_help="(unavailable: run it for why)", add_help_option=False,
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
