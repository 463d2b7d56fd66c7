"""`maild token create|list|revoke`: personal API tokens for the JSON API (`Authorization: Bearer TOKEN`)."""

from __future__ import annotations

import sys

import click

from maild.cli.context import AppContext, pass_app
from maild.cli.render import say


@click.group("token")
def token() -> None:
    """Personal API tokens: stored hashed, shown once, revocable."""


@token.command("create")
@click.argument("username")
@click.option("--name", default="", help="What the token is for (shown in `token list`).")
@pass_app
def create(app: AppContext, username: str, name: str) -> None:
    """Create a token for USERNAME and print it once (keep it: only its hash is stored)."""
    from maild.services import tokens
    from maild.services.actor import cli_actor

    try:
        token_id, value = tokens.create(app.database(), cli_actor(), username, name)
    except LookupError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    click.echo(value)
    say(f"token {token_id} for {username}: shown once; send it as 'Authorization: Bearer TOKEN'", err=True)


@token.command("list")
@click.option("--user", "username", default=None, help="Only this user's tokens.")
@pass_app
def list_(app: AppContext, username: str | None) -> None:
    """One line per token: id, user, name, created, last used, revoked (never the token)."""
    from maild.services import tokens

    rows = tokens.listing(app.database(), username)
    if not rows:
        click.echo("no tokens")
    for row in rows:
        used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
        say(f"{row.id:>5}  {row.username:20} {row.name[:30]:30} created {row.created_at:%Y-%m-%d}  used {used}"
            + ("  REVOKED" if row.revoked_at else ""))


@token.command("revoke")
@click.argument("token_id", type=int)
@pass_app
def revoke(app: AppContext, token_id: int) -> None:
    """Revoke token TOKEN_ID (from `maild token list`): it is refused from now on."""
    from maild.services import tokens
    from maild.services.actor import cli_actor

    try:
        changed = tokens.revoke(app.database(), cli_actor(), token_id)
    except LookupError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    if not changed:
        say(f"token {token_id} was already revoked", err=True)
        sys.exit(1)
    say(f"token {token_id} revoked")
