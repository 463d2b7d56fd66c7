"""`maild quarantine list|show|retry`."""

from __future__ import annotations

import sys

import click

from maild.cli.context import AppContext, pass_app
from maild.cli.render import say


@click.group()
def quarantine() -> None:
    """Messages maild kept but could not store, with the reason."""


@quarantine.command("list")
@click.option("--all", "include_resolved", is_flag=True, help="Include entries resolved by a retry.")
@pass_app
def list_(app: AppContext, include_resolved: bool) -> None:
    """One line per quarantined message: id, size, where it came from, why."""
    from maild.ingest import quarantine as q

    items = q.entries(app.database(), include_resolved)
    if not items:
        click.echo("quarantine is empty")
    for item in items:
        state = f" resolved->message {item.resolved_message_id}" if item.resolved_message_id else ""
        say(f"{item.id:>5}  {item.size:>9} B  {item.source_name}/{item.folder}  {item.reason}{state}")


@quarantine.command()
@click.argument("entry_id", type=int)
@click.option("--raw", is_flag=True, help="Write the raw message bytes to stdout.")
@pass_app
def show(app: AppContext, entry_id: int, raw: bool) -> None:
    """Details of one entry (or its raw bytes with --raw)."""
    from maild.ingest import quarantine as q
    from maild.store.blobs import BlobStore

    item = q.entry(app.database(), entry_id)
    if item is None:
        raise click.ClickException(f"no quarantine entry {entry_id}")
    blobs = BlobStore(app.config.blob_dir)
    if raw:
        blobs.copy_to(item.raw_sha256, sys.stdout.buffer)  # in pieces: a quarantined mail may be oversized
        sys.stdout.buffer.flush()
        return
    for key in ("id", "reason", "size", "source_name", "folder", "created_at", "retries", "last_retry_at",
                "resolved_message_id", "raw_sha256"):
        say(f"{key}: {getattr(item, key)}")
    say(f"raw file: {blobs.path(item.raw_sha256)}")


@quarantine.command()
@click.argument("entry_ids", type=int, nargs=-1)
@click.option("--all", "retry_all", is_flag=True, help="Retry every unresolved entry.")
@click.option("--max-bytes", type=int, default=None, help="Size limit for this retry (default: the config's).")
@pass_app
def retry(app: AppContext, entry_ids: tuple[int, ...], retry_all: bool, max_bytes: int | None) -> None:
    """Parse and store quarantined messages again (after an upgrade, or with a larger --max-bytes).

    A raw message over the limit (ingest.max_message_bytes, or --max-bytes) is not read: it stays quarantined
    with the size it would need."""
    from maild.ingest import quarantine as q
    from maild.services import quarantine as service
    from maild.services.actor import cli_actor

    db = app.database()
    ids = q.pending_ids(db) if retry_all else list(entry_ids)
    if not ids:
        raise click.UsageError("name entry ids or use --all")
    actor = cli_actor()
    failed = 0
    for entry_id in ids:
        try:
            outcome = service.retry(db, app.config, actor, entry_id, max_bytes)
        except (LookupError, FileNotFoundError) as exc:
            say(f"{entry_id}: {exc}", err=True)
            failed += 1
            continue
        if outcome.message_id is not None:
            say(f"{entry_id}: stored as message {outcome.message_id}")
        else:
            failed += 1
            hint = (f"; not read (retry with --max-bytes {outcome.oversized_bytes} to parse it)"
                    if outcome.oversized_bytes is not None else "")
            say(f"{entry_id}: still quarantined: {outcome.reason}{hint}")
    if failed:
        sys.exit(1)

