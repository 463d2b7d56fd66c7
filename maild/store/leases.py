"""Named leases in the database: "exactly one of the daemons does X" (e.g. runs the rules scheduler).

A compare-and-set on one row, the same on SQLite and PostgreSQL. A holder renews before `ttl` runs out;
when it stops renewing (crash, network) another daemon takes over after the expiry — at once when the
holder was a process on this host that no longer exists.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select, update

from maild.clock import as_utc, utcnow
from maild.store.checkpoints import is_dead_local_process
from maild.store.db import Database
from maild.store.models import Lease

_lease = Lease.__table__


def acquire(db: Database, name: str, owner: str, ttl: float) -> bool:
    """Take or renew the lease `name` for `owner`; True when `owner` holds it for the next `ttl` seconds."""
    now = utcnow()
    expires = now + timedelta(seconds=ttl)
    with db.engine.begin() as conn:
        conn.execute(db.insert_ignore(_lease).values(name=name, owner=owner, expires_at=expires))
        row = conn.execute(select(_lease.c.owner, _lease.c.expires_at).where(_lease.c.name == name)).one()
        holder, until = row[0], as_utc(row[1])
        if holder == owner:
            conn.execute(update(_lease).where(_lease.c.name == name, _lease.c.owner == owner)
                         .values(expires_at=expires))
            return True
        if until is not None and until > now and not is_dead_local_process(holder):
            return False
        # Two contenders may both see it expired: the compare on the old holder lets one of them win.
        result = conn.execute(update(_lease).where(_lease.c.name == name, _lease.c.owner == holder)
                              .values(owner=owner, expires_at=expires))
        return result.rowcount == 1


def holder(db: Database, name: str) -> str | None:
    """Who holds the lease now (None when nobody or expired)."""
    with db.engine.connect() as conn:
        row = conn.execute(select(_lease.c.owner, _lease.c.expires_at).where(_lease.c.name == name)).first()
    if row is None or (as_utc(row[1]) or utcnow()) <= utcnow():
        return None
    return str(row[0])


def release(db: Database, name: str, owner: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(delete(_lease).where(_lease.c.name == name, _lease.c.owner == owner))
