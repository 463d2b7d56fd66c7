"""`maild user add|list|disable|enable|passwd`: the people who may log in to the web app, and their roles."""

from __future__ import annotations

import sys

import click

from maild.cli.context import AppContext, pass_app
from maild.cli.render import say
from maild.services.actor import ROLES


def _read_password(from_stdin: bool) -> str:
    """From standard input (first line) with --password-stdin, else prompted twice; never on the command line."""
    if from_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise click.ClickException("no password on standard input")
        return password
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@click.group("user")
def user() -> None:
    """Web app users: admin (users and everything), staff (read and act), viewer (read only)."""


@user.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default="viewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (for scripts).")
@pass_app
def add(app: AppContext, username: str, role: str, password_stdin: bool) -> None:
    """Add USERNAME with a password (prompted, or --password-stdin; at least 10 characters)."""
    from maild.services import users
    from maild.services.actor import cli_actor

    password = _read_password(password_stdin)
    try:
        view = users.add_user(app.database(), cli_actor(), username, password, role)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    say(f"user {view.username} added ({view.role})")


@user.command("list")
@pass_app
def list_(app: AppContext) -> None:
    """One line per user: name, role, disabled or not, last login."""
    from maild.services import users

    rows = users.list_users(app.database())
    if not rows:
        click.echo("no users yet: maild user add NAME --role admin")
    for row in rows:
        last = f"{row.last_login_at:%Y-%m-%d %H:%M}" if row.last_login_at else "never"
        say(f"{row.username:30} {row.role:7} {'DISABLED' if row.disabled else 'active':8} last login {last}")


def _set_disabled(app: AppContext, username: str, disabled: bool) -> None:
    from maild.services import users
    from maild.services.actor import cli_actor

    try:
        users.set_disabled(app.database(), cli_actor(), username, disabled)
    except LookupError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    say(f"user {username} {'disabled: sessions ended, tokens refused' if disabled else 'enabled'}")


@user.command("disable")
@click.argument("username")
@pass_app
def disable(app: AppContext, username: str) -> None:
    """Disable USERNAME: their sessions end at once and their API tokens are refused."""
    _set_disabled(app, username, True)


@user.command("enable")
@click.argument("username")
@pass_app
def enable(app: AppContext, username: str) -> None:
    """Enable a disabled USERNAME again."""
    _set_disabled(app, username, False)


@user.command("passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input (for scripts).")
@pass_app
def passwd(app: AppContext, username: str, password_stdin: bool) -> None:
    """Set USERNAME's password (prompted, or --password-stdin); their sessions end."""
    from maild.services import users
    from maild.services.actor import cli_actor

    password = _read_password(password_stdin)
    try:
        users.set_password(app.database(), cli_actor(), username, password)
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc.args[0])) from None
    say(f"password of {username} changed; their sessions ended")
