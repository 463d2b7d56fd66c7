"""`maild outbox list|retry|cancel|send-due`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import click

from maild.cli.context import AppContext, pass_app
from maild.cli.render import say
from maild.config import ConfigError
from maild.store.db import Database


@click.group()
def outbox() -> None:
    """Outbound mail: what is queued, sent or failed (and why)."""


@outbox.command("list")
@click.option("--status", type=click.Choice(["queued", "sending", "sent", "retry", "failed", "cancelled"]),
              default=None, help="Only rows in this state.")
@click.option("--limit", type=int, default=None, help="At most this many rows.")
@pass_app
def list_(app: AppContext, status: str | None, limit: int | None) -> None:
    """One line per outbox row: id, status, attempts, recipients, subject, last error."""
    from maild.outbound import outbox as ob

    rows = ob.listing(app.database(), status, limit)
    if not rows:
        click.echo("outbox is empty" if status is None else f"no outbox rows with status {status}")
    for row in rows:
        when = f" next {row.next_attempt_at:%Y-%m-%d %H:%M:%S}" if row.status == "retry" and row.next_attempt_at else ""
        error = f"  [{row.last_error}]" if row.last_error and row.status != "sent" else ""
        say(f"{row.id:>6}  {row.status:<9} {row.attempts:>2}x  {','.join(row.recipients)}  "
            f"{row.subject!r}  key={row.idempotency_key}{when}{error}")


@outbox.command()
@click.argument("ids", type=int, nargs=-1, required=True)
@pass_app
def retry(app: AppContext, ids: tuple[int, ...]) -> None:
    """Queue failed or cancelled mail again (check first that an "interrupted" one did not arrive)."""
    from maild.outbound import outbox as ob

    _each(app, ids, ob.retry, "queued", "not failed or cancelled")


@outbox.command()
@click.argument("ids", type=int, nargs=-1, required=True)
@pass_app
def cancel(app: AppContext, ids: tuple[int, ...]) -> None:
    """Withdraw queued mail (or mail waiting for a retry)."""
    from maild.outbound import outbox as ob

    _each(app, ids, ob.cancel, "cancelled", "not queued or waiting for a retry")


def _each(app: AppContext, ids: tuple[int, ...], change: Callable[[Database, int], bool], done: str,
          refused: str) -> None:
    """Apply `change` to each outbox row; exit 1 if any row was left unchanged."""
    db = app.database()
    bad = 0
    for outbox_id in ids:
        if change(db, outbox_id):
            say(f"{outbox_id}: {done}")
        else:
            bad += 1
            say(f"{outbox_id}: {refused} (or no such row); unchanged", err=True)
    if bad:
        sys.exit(1)


@outbox.command("send-due")
@click.option("--limit", type=int, default=100, show_default=True, help="At most this many messages.")
@pass_app
def send_due(app: AppContext, limit: int) -> None:
    """One pass: send what is due with the configured transport, then exit (1 if anything failed)."""
    from maild.ingest.context import new_owner_id
    from maild.outbound import outbox as ob
    from maild.outbound.sender import build_sender

    db = app.database()
    try:
        sender = build_sender(app.config, db, new_owner_id())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    recovered = ob.recover_stale(db)

    async def once() -> dict[str, int]:
        try:
            return await sender.send_due(limit)
        finally:
            await sender.transport.close()

    counts = asyncio.run(once())
    say(f"sent {counts['sent']}, retry {counts['retry']}, failed {counts['failed']}"
        + (f"; recovered stale claims: {recovered}" if any(recovered.values()) else ""))
    if counts["failed"]:
        sys.exit(1)

