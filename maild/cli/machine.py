"""`maild classify FILE...` and `maild contact show ADDRESS`: machine mail as an administrator sees it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from maild.cli.context import AppContext, pass_app
from maild.cli.render import say


@click.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON line per file: file, kind, reasons, recipients, "
              "return_date.")
@click.option("--backfill", is_flag=True, help="Instead of FILEs: classify the stored mail that has no kind yet "
              "(stored before classification existed), newest first, from its raw bytes; progress on stderr.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="With --backfill: at most N messages.")
@click.option("--batch", type=click.IntRange(min=1, max=10_000), default=500, show_default=True,
              help="With --backfill: messages per transaction.")
@pass_app
def classify(app: AppContext, files: tuple[Path, ...], as_json: bool, backfill: bool, limit: int | None,
             batch: int) -> None:
    """Classify .eml FILEs as maild would at ingest (human, bounce, auto_reply, feedback_report, list,
    notification) and show why, the failed recipients of a bounce and an auto-reply's return date. Nothing is
    stored. Uses the config's instance id and outbound.return_path when a config is found. A file that cannot
    be read gets kind "error" and the run goes on; exit 1 if any could not.

    With --backfill: classify the stored mail that has no kind (stored before classification existed) and store
    its kind. Resumable and safe while the daemon runs (which does the same in the background); what a late
    bounce would have set off at ingest does not follow (docs/machine-mail.md)."""
    if backfill:
        if files:
            raise click.UsageError("--backfill classifies stored mail: give no FILEs with it")
        _backfill(app, limit, batch)
        return
    if limit is not None:
        raise click.UsageError("--limit goes with --backfill")
    if not files:
        raise click.UsageError("give .eml FILEs to classify, or --backfill for the stored mail without a kind")
    from maild.classify.base import Settings
    from maild.classify.chain import classify_bytes

    settings = _settings(app) or Settings()
    failed = 0
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            failed += 1
            _show(as_json, {"file": str(path), "kind": "error", "reasons": [f"cannot read: {exc.strerror or exc}"],
                            "recipients": [], "return_date": None})
            continue
        found = classify_bytes(raw, settings)
        _show(as_json, {"file": str(path), "kind": found.kind, "reasons": found.reasons,
                        "recipients": [{k: r.as_json()[k] for k in ("address", "action", "status", "diagnostic",
                                                                    "hard")} for r in found.recipients],
                        "return_date": found.return_date})
    if failed:
        raise SystemExit(1)


def _backfill(app: AppContext, limit: int | None, batch: int) -> None:
    """`maild classify --backfill`: the stored mail without a kind, classified and stored, progress on stderr."""
    from maild.classify.backfill import Batch, BlobStoreMissing, backfill, unclassified
    from maild.classify.settings import classify_settings
    from maild.store.blobs import BlobStore

    config = app.config
    settings = classify_settings(config)
    if settings is None:
        raise click.ClickException("machine_mail.classify is false: every mail counts as written by a person, "
                                   "nothing to classify")
    db = app.database()
    with db.engine.connect() as conn:
        before = unclassified(conn)
    goal = before if limit is None else min(before, limit)
    click.echo(f"{before} stored message(s) without a kind; classifying {goal}, newest first", err=True)

    def progress(done: Batch) -> None:
        click.echo(f"  {done.rows}/{goal}: {done.describe()}", err=True)

    try:
        total = backfill(db, BlobStore(config.blob_dir), settings, batch=batch, limit=limit, progress=progress)
    except BlobStoreMissing as exc:
        raise click.ClickException(str(exc)) from exc
    with db.engine.connect() as conn:
        left = unclassified(conn)
    click.echo(f"{total.describe()}; {left} left without a kind")


@click.command("show")
@click.argument("address")
@pass_app
def contact_show(app: AppContext, address: str) -> None:
    """ADDRESS: the contact(s) it belongs to and whether mail to it arrives (undeliverable since when and why,
    soft bounces, cleared by a later mail), with its latest delivery-failure notices."""
    from sqlalchemy import select

    from maild.bounces import health
    from maild.directory import service
    from maild.store.models import Bounce

    db = app.database()
    key = health.key(address)
    if key is None:
        raise click.ClickException(f"{address!r} is not a mail address")
    contacts = [c for c in service.list_contacts(db, None) if key in {health.key(a) for a in c["addresses"]}]
    for c in contacts:
        say(f"contact #{c['id']} {c['name']} ({c['role'] or '-'}) of #{c['thirdparty_id']} {c['thirdparty_name']}")
    if not contacts:
        say(f"{address}: no contact has this address")
    found = health.lookup(db, address)
    say(f"health: {found.describe() if found else 'ok (no delivery failure recorded)'}")
    b = Bounce.__table__
    with db.engine.connect() as conn:
        rows = conn.execute(select(b).where(b.c.address == key).order_by(b.c.id.desc()).limit(5)).all()
    for row in rows:
        counted = "" if row.counted else ", not counted"
        say(f"  {row.created_at:%Y-%m-%d %H:%M} message {row.message_id}: {row.action} {row.status or '-'} "
            f"{row.reason} ({'hard' if row.hard else 'soft'}{counted}): {row.diagnostic}")


def _settings(app: AppContext) -> Any:
    from maild.classify.settings import classify_settings
    from maild.config import ConfigError, find_config_path, load_config

    try:
        config = load_config(find_config_path(app.config_path))
    except (ConfigError, OSError):
        return None  # no config: classification needs none (only VERP addresses are then not recognised)
    return classify_settings(config)


def _show(as_json: bool, data: dict[str, Any]) -> None:
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    back = f" (back on {data['return_date']})" if data["return_date"] else ""
    say(f"{data['file']}: {data['kind']}{back}")
    for reason in data["reasons"]:
        say(f"  {reason}")
    for r in data["recipients"]:
        kind = "hard" if r["hard"] else "soft"
        say(f"  recipient {r['address']}: {r['action']} {r['status'] or '-'} ({kind}) {r['diagnostic']}")
