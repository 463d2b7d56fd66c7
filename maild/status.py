"""What `maild status` reports: per-folder checkpoint, counts, lag, last error; the totals; and the workers of
the running daemons (state, last error, restarts) as their supervisors last wrote them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select

from maild.classify import backfill
from maild.classify.background import LEASE_NAME as BACKFILL_LEASE
from maild.clock import as_utc, utcnow
from maild.imap.limits import connection_of
from maild.rules.scheduler import LEASE_NAME
from maild.store import leases, worker_status
from maild.store.db import Database
from maild.store.models import (
    Event,
    FolderCheckpoint,
    Location,
    Message,
    OutboxMessage,
    Quarantine,
    RuleCursor,
    RuleLedger,
    Source,
)
from maild.supervisor import STATUS_FRESH


@dataclass
class FolderStatus:
    source: str
    kind: str
    folder: str
    uidvalidity: int | None
    last_uid: int
    locations: int
    quarantined: int
    lag: int | None
    last_success_at: str | None
    seconds_since_success: float | None
    last_error: str | None
    last_error_at: str | None
    held_by: str | None
    connection: str | None  # "idle" (its own connection), "polled" (the account's shared one), None: no daemon runs it


def collect(db: Database, *, classifying: bool = True) -> dict[str, Any]:
    """`classifying`: machine_mail.classify is on (then mail without a kind is mail still to classify)."""
    cp, src, loc = FolderCheckpoint.__table__, Source.__table__, Location.__table__
    now = utcnow()
    with db.engine.connect() as conn:
        counts = {
            (row.source_id, row.folder): (row.total, row.quarantined)
            for row in conn.execute(
                select(loc.c.source_id, loc.c.folder, func.count().label("total"),
                       func.count(loc.c.quarantine_id).label("quarantined"))
                .group_by(loc.c.source_id, loc.c.folder))
        }
        folders = []
        for row in conn.execute(select(cp, src.c.name, src.c.kind).join(src, src.c.id == cp.c.source_id)
                                .order_by(src.c.name, cp.c.folder)):
            total, quarantined = counts.get((row.source_id, row.folder), (0, 0))
            success = as_utc(row.last_success_at)
            lock_until = as_utc(row.lock_expires_at)
            folders.append(FolderStatus(
                source=row.name, kind=row.kind, folder=row.folder, uidvalidity=row.uidvalidity,
                last_uid=row.last_uid, locations=total, quarantined=quarantined, lag=_lag(row, total),
                last_success_at=success.isoformat() if success else None,
                seconds_since_success=round((now - success).total_seconds(), 1) if success else None,
                last_error=row.last_error,
                last_error_at=as_utc(row.last_error_at).isoformat() if row.last_error_at else None,
                held_by=row.lock_owner if lock_until and lock_until > now else None,
                connection=None,
            ))
        totals = {
            "messages": conn.execute(select(func.count()).select_from(Message.__table__)).scalar_one(),
            "quarantined": conn.execute(select(func.count()).select_from(Quarantine.__table__)
                                        .where(Quarantine.__table__.c.resolved_message_id.is_(None))).scalar_one(),
            "locations": sum(c[0] for c in counts.values()),
            "events": conn.execute(select(func.count()).select_from(Event.__table__)).scalar_one(),
        }
        work = _work(conn)
        unclassified = backfill.unclassified(conn)
    work["rules"]["scheduler"] = leases.holder(db, LEASE_NAME)
    workers = worker_status.current(db, STATUS_FRESH)
    names = {w["name"] for w in workers}
    for f in folders:
        if f.kind == "imap":
            f.connection = connection_of(f"{f.source}/{f.folder}", names)
    # Mail stored before classification existed: how much is left, and which daemon classifies it in the background.
    classify = {"on": classifying, "unclassified": unclassified,
                "backfill": leases.holder(db, BACKFILL_LEASE) if classifying and unclassified else None}
    return {"totals": totals, "folders": [asdict(f) for f in folders], **work, "classify": classify,
            "workers": workers}


def _work(conn: Any) -> dict[str, Any]:
    """The outbox by status, and the rules: ledger rows by status, events not yet seen by the engine."""
    out, ledger, cursor = OutboxMessage.__table__, RuleLedger.__table__, RuleCursor.__table__
    outbox = dict(conn.execute(select(out.c.status, func.count()).group_by(out.c.status)).all())
    actions = dict(conn.execute(select(ledger.c.status, func.count()).group_by(ledger.c.status)).all())
    position = conn.execute(select(cursor.c.last_event_id).where(cursor.c.name == "events")).scalar()
    newest = conn.execute(select(func.max(Event.__table__.c.id))).scalar() or 0
    behind = None if position is None else max(0, newest - position)
    return {"outbox": outbox, "rules": {"actions": actions, "events_behind": behind}}


def _lag(row: Any, locations: int) -> int | None:
    """Messages the server had that are not ingested yet, as of the last look at the folder."""
    if row.kind == "imap":
        return None if row.server_uidnext is None else max(0, row.server_uidnext - 1 - row.last_uid)
    return None if row.server_messages is None else max(0, row.server_messages - locations)
