"""The `worker_status` table: a daemon's supervisor writes its workers' states; `maild status` reads them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from maild.clock import as_utc, utcnow
from maild.health import HealthView
from maild.store.db import Database
from maild.store.models import WorkerStatus

T = WorkerStatus.__table__
FORGET_AFTER = timedelta(days=1)  # rows of a daemon that vanished without a clean stop


def report(db: Database, owner: str, views: Sequence[HealthView]) -> None:
    """Replace `owner`'s rows with `views` (one transaction); drop rows nobody updated for a day."""
    now = utcnow()
    with db.engine.begin() as conn:
        conn.execute(delete(T).where(T.c.owner == owner))
        conn.execute(delete(T).where(T.c.updated_at < now - FORGET_AFTER))
        if views:
            conn.execute(T.insert(), [
                {"owner": owner, "name": v.name[:300], "state": v.state, "attempt": v.attempt, "restarts": v.restarts,
                 "last_error": v.last_error, "last_error_at": v.last_error_at, "retry_at": v.retry_at,
                 "since": v.since, "updated_at": now} for v in views])


def forget(db: Database, owner: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(delete(T).where(T.c.owner == owner))


def current(db: Database, fresh_within: float) -> list[dict[str, Any]]:
    """Rows reported in the last `fresh_within` seconds (daemons running now), oldest owner first."""
    since = utcnow() - timedelta(seconds=fresh_within)
    with db.engine.connect() as conn:
        rows = conn.execute(select(T).where(T.c.updated_at >= since).order_by(T.c.owner, T.c.name)).all()
    return [{"owner": r.owner, "name": r.name, "state": r.state, "attempt": r.attempt, "restarts": r.restarts,
             "last_error": r.last_error, "last_error_at": _iso(r.last_error_at), "retry_at": _iso(r.retry_at),
             "since": _iso(r.since), "updated_at": _iso(r.updated_at)} for r in rows]


def _iso(value: datetime | None) -> str | None:
    stamp = as_utc(value)
    return stamp.isoformat() if stamp else None
