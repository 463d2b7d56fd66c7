"""`maild outbox list|show|retry|mark-sent|cancel|send-due`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import click

from maild.cli.context import AppContext, pass_app
from maild.cli.render import say
from maild.config import ConfigError
from maild.services.actor import Actor, cli_actor
from maild.store.db import Database

if TYPE_CHECKING:
    from maild.outbound.sent_copy import SentCopies
    from maild.store.models import OutboxMessage

DECIDE = ("check with the recipient: if it did not arrive, `maild outbox retry {id}`; "
          "if it did, `maild outbox mark-sent {id}`")


@click.group()
def outbox() -> None:
    """Outbound mail: what is queued, sent or failed (and why)."""


@outbox.command("list")
@click.option("--status", type=click.Choice(["queued", "sending", "sent", "retry", "failed", "ambiguous",
                                             "cancelled"]),
              default=None, help="Only rows in this state.")
@click.option("--limit", type=int, default=None, help="At most this many rows.")
@pass_app
def list_(app: AppContext, status: str | None, limit: int | None) -> None:
    """One line per outbox row: id, status, attempts, recipients, subject, last error.

    An ambiguous row (its SMTP DATA began and no reply is on record: it may have arrived) also shows when and
    on which connection DATA began and whether its copy is in the Sent folder (when
    outbound.sent_folder_source is set), and how to decide.
    """
    from maild.outbound import outbox as ob

    rows = ob.listing(app.database(), status, limit)
    if not rows:
        click.echo("outbox is empty" if status is None else f"no outbox rows with status {status}")
    copies = _sent_copies(app, [row for row in rows if row.status == "ambiguous"])
    for row in rows:
        when = f" next {row.next_attempt_at:%Y-%m-%d %H:%M:%S}" if row.status == "retry" and row.next_attempt_at else ""
        error = f"  [{row.last_error}]" if row.last_error and row.status != "sent" else ""
        if row.status == "ambiguous" and copies is not None:
            error = f"  [{_ambiguity(row, copies)}]"
        say(f"{row.id:>6}  {row.status:<9} {row.attempts:>2}x  {','.join(row.recipients)}  "
            f"{row.subject!r}  key={row.idempotency_key}{when}{error}")
    ambiguous = [row.id for row in rows if row.status == "ambiguous"]
    if ambiguous:
        ids = " ".join(str(i) for i in ambiguous)
        say(f"{len(ambiguous)} ambiguous (may have arrived): {DECIDE.format(id=ids)}; details: "
            f"`maild outbox show ID`")


@outbox.command()
@click.argument("outbox_id", type=int, metavar="ID")
@pass_app
def show(app: AppContext, outbox_id: int) -> None:
    """One outbox row in full, with its delivery story: every attempt (time, outcome, SMTP reply, the
    connection its DATA began on) and every decision (retry, mark-sent, cancel), kept across retries."""
    from maild.outbound import attempts
    from maild.outbound import outbox as ob

    db = app.database()
    row = ob.get(db, outbox_id)
    if row is None:
        raise click.ClickException(f"no outbox row {outbox_id} (see `maild outbox list`)")
    say(f"outbox {row.id}: {row.status}")
    for label, value in (("key", row.idempotency_key), ("template", row.template), ("to", ", ".join(row.recipients)),
                         ("subject", row.subject), ("Message-ID", row.header_message_id),
                         ("third party", row.thirdparty_id), ("queued", _at(row.created_at)),
                         ("failures", row.attempts if row.status != "sent" else None),
                         ("next attempt", _at(row.next_attempt_at) if row.status == "retry" else None),
                         ("sent", _at(row.sent_at)), ("reply", row.smtp_reply if row.status == "sent" else None),
                         ("last error", row.last_error if row.status != "sent" else None)):
        if value not in (None, ""):
            say(f"  {label + ':':<13} {value}")
    if row.status == "ambiguous":
        copies = _sent_copies(app, [row])
        assert copies is not None
        say(f"  {'ambiguous:':<13} {_ambiguity(row, copies)}")
        say(f"  {'decide:':<13} {DECIDE.format(id=row.id)}")
    story = attempts.story(db, outbox_id)
    say("delivery story:" if story else "delivery story: no attempt yet")
    for attempt in story:
        reply = f"  {attempt.reply}" if attempt.reply else ""
        began = f"  (DATA began {_at(attempt.data_started_at)} on {attempt.connection})" \
            if attempt.data_started_at else ""
        detail = f"  {attempt.detail}" if attempt.detail and attempt.detail != attempt.reply else ""
        say(f"  {_at(attempt.at)}  {attempt.outcome:<10}{reply}{detail}{began}")


def _at(value: datetime | None) -> str | None:
    from maild.clock import as_utc

    moment = as_utc(value)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else None


def _ambiguity(row: OutboxMessage, copies: SentCopies) -> str:
    began = f"DATA began {_at(row.data_started_at)} on {row.data_connection or 'an unknown connection'}" \
        if row.data_started_at else "DATA began (time not recorded)"
    return f"{began}, no reply on record; Sent copy: {copies.describe(row.header_message_id)}"


def _sent_copies(app: AppContext, rows: list[OutboxMessage]) -> SentCopies | None:
    from maild.outbound.sent_copy import look_up

    return look_up(app.config, [row.header_message_id for row in rows]) if rows else None


@outbox.command()
@click.argument("ids", type=int, nargs=-1, required=True)
@pass_app
def retry(app: AppContext, ids: tuple[int, ...]) -> None:
    """Queue failed, ambiguous or cancelled mail again (for an ambiguous one, check first that it did not
    arrive: `maild outbox show ID`). The earlier attempts stay in its delivery story."""
    from maild.services import outbox as service

    _each(app, ids, service.retry, "queued", "not failed, ambiguous or cancelled")


@outbox.command("mark-sent")
@click.argument("ids", type=int, nargs=-1, required=True)
@pass_app
def mark_sent(app: AppContext, ids: tuple[int, ...]) -> None:
    """Record an ambiguous mail as sent: you checked that it arrived (it is then on the timeline as sent)."""
    from maild.services import outbox as service

    _each(app, ids, service.mark_sent, "sent (marked by you)", "not ambiguous")


@outbox.command()
@click.argument("ids", type=int, nargs=-1, required=True)
@pass_app
def cancel(app: AppContext, ids: tuple[int, ...]) -> None:
    """Withdraw queued mail (or mail waiting for a retry)."""
    from maild.services import outbox as service

    _each(app, ids, service.cancel, "cancelled", "not queued or waiting for a retry")


def _each(app: AppContext, ids: tuple[int, ...], change: Callable[[Database, Actor, int], bool], done: str,
          refused: str) -> None:
    """Apply `change` (audited) to each outbox row; exit 1 if any row was left unchanged."""
    db = app.database()
    actor = cli_actor()
    bad = 0
    for outbox_id in ids:
        try:
            changed = change(db, actor, outbox_id)
        except LookupError:
            changed = False
        if changed:
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
    from maild.services import outbox as service

    db = app.database()
    try:
        sender = build_sender(app.config, db, new_owner_id())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    recovered = ob.recover_stale(db)

    async def once() -> dict[str, int]:
        try:
            return await service.send_due(cli_actor(), sender, limit)
        finally:
            await sender.transport.close()

    counts = asyncio.run(once())
    say(f"sent {counts['sent']}, retry {counts['retry']}, failed {counts['failed']}"
        + (f"; recovered stale claims: {recovered}" if any(recovered.values()) else ""))
    if recovered.get("ambiguous"):
        say(f"{recovered['ambiguous']} ambiguous (DATA began, no reply on record): see `maild outbox list "
            f"--status ambiguous`", err=True)
    if counts["failed"]:
        sys.exit(1)

