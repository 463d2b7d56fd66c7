"""Login throttling: after `max_failures` wrong passwords for one user name within the window, it must wait."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, select

from maild.clock import as_utc
from maild.store.models import LoginThrottle

_t = LoginThrottle.__table__


def locked_until(conn: Connection, key: str, now: datetime) -> datetime | None:
    """When the user name may try again, if it must wait now."""
    until = as_utc(conn.execute(select(_t.c.locked_until).where(_t.c.key == key)).scalar())
    return until if until is not None and until > now else None


def failed(conn: Connection, key: str, now: datetime, *, max_failures: int, window: float) -> datetime | None:
    """Count one failure; returns the lock's end when this failure reached the limit."""
    row = conn.execute(select(_t).where(_t.c.key == key)).one_or_none()
    span = timedelta(seconds=window)
    if row is None or (as_utc(row.window_start) or now) + span < now:
        failures, start = 1, now
        if row is None:
            conn.execute(_t.insert().values(key=key, failures=0, window_start=now))
    else:
        failures, start = row.failures + 1, as_utc(row.window_start) or now
    lock = now + span if failures >= max_failures else None
    conn.execute(_t.update().where(_t.c.key == key).values(failures=failures, window_start=start, locked_until=lock))
    return lock


def succeeded(conn: Connection, key: str) -> None:
    conn.execute(_t.delete().where(_t.c.key == key))
