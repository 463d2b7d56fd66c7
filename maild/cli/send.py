"""`maild send`: render a template for a third party or address, queue it in the outbox, send it."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import click

from maild.cli.context import AppContext, pass_app
from maild.cli.render import say


@click.command()
@click.argument("template")
@click.option("--to", "to", required=True, help="A third party (id, external id or name) or a mail address.")
@click.option("--invoice", "invoice_ref",
              help="Invoice reference: `invoice` in the template, and its PDF attached (an invoice with its amounts: "
                   "`maild invoice add` / `maild import invoices`, not a bare document number).")
@click.option("--letter", "letter", type=click.IntRange(1, 9), metavar="LEVEL",
              help="With --invoice: attach the reminder letter of this level (docs/rules.md, \"Reminder letters\") "
                   "instead of the invoice copy.")
@click.option("--attach", "attach", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file to attach (repeatable).")
@click.option("--lang", "language", help="Language variant (default: the contact's, the third party's, the config's).")
@click.option("--key", help="Idempotency key: the same key is never sent twice (default: a new one per call).")
@click.option("--dry-run", is_flag=True, help="Show the message that would be sent; queue nothing.")
@click.option("--queue-only", is_flag=True, help="Queue it for the daemon instead of sending now.")
@click.option("--allow-undeliverable", is_flag=True,
              help="Send even though mail to the address bounced for good (see `maild contact health`).")
@pass_app
def send(app: AppContext, template: str, to: str, invoice_ref: str | None, letter: int | None,
         attach: tuple[Path, ...], language: str | None, key: str | None, dry_run: bool, queue_only: bool,
         allow_undeliverable: bool) -> None:
    """Send TEMPLATE to a third party or address, through the outbox (once per --key)."""
    from maild.config import ConfigError
    from maild.outbound import mailing

    if letter is not None and not invoice_ref:
        raise click.UsageError("--letter needs --invoice REF (the invoice the reminder is about)")
    db = app.database()
    try:
        mail = mailing.prepare(app.config, db, template=template, to=to, invoice_ref=invoice_ref, attach=attach,
                               language=language, allow_undeliverable=allow_undeliverable,
                               invoice_copy=letter is None, dunning_level=letter)
    except (ValueError, LookupError, ConfigError) as exc:
        raise click.ClickException(str(exc.args[0] if exc.args else exc)) from None
    if dry_run:
        click.echo(mail.raw.decode("utf-8", "replace"))
        return
    from maild.services import outbox as service
    from maild.services.actor import cli_actor

    actor = cli_actor()
    key = key or f"cli:{uuid.uuid4().hex}"
    outbox_id, created = service.queue_mail(db, app.config, actor, mail, key=key, template=template)
    if not created:
        say(f"key {key} was queued before (outbox {outbox_id}); not sent again")
        return
    say(f"queued outbox {outbox_id} to {mail.recipient.address}: {mail.subject!r} (key {key})")
    if queue_only:
        return
    from maild.ingest.context import new_owner_id
    from maild.outbound import outbox
    from maild.outbound.sender import build_sender

    sender = build_sender(app.config, db, new_owner_id())

    async def once() -> None:
        try:
            await service.send_due(actor, sender, limit=100)
        finally:
            await sender.transport.close()

    asyncio.run(once())
    row = outbox.get(db, outbox_id)
    assert row is not None
    detail = row.smtp_reply or row.last_error or ""
    say(f"outbox {outbox_id}: {row.status} {detail}".rstrip())
