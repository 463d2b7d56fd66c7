"""The durable event cursor (`rule_cursors`, name "events") and safe reading of new timeline events.

PostgreSQL hands out ids from a sequence before the inserting transaction commits, so a reader can see id
11 while 10 is still uncommitted: moving the cursor past 10 would lose it. `read` therefore stops at the first
gap until it is settled. A gap is held for `min_gap_age` first (an INSERT draws its id an instant before its
transaction gets its id); then the reader notes the newest transaction id handed out so far (its `horizon`:
whatever transaction holds the missing event has an id up to it) and the gap is settled once no transaction
of maild's own database with an id up to the horizon is still running: the missing id then became visible or
was rolled back for good (a permanent gap). Only this database counts (`pg_stat_activity.datid`, and prepared
transactions of this database): transaction ids are shared by the whole server, but a transaction of another
database can never write our events, so another application's long transaction does not hold the rules. The
running transactions are the server's snapshot taken after the horizon (so it lists every transaction up to
it: a snapshot leaves out only those newer than its newest commit, and the horizon's own transaction is
committed). A gap is passed with a warning after `gap_timeout` (a transaction of this database left open that
long, e.g. an idle session). SQLite has one writer: no such gaps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from maild.store.db import Database
from maild.store.models import Event, RuleCursor

log = logging.getLogger("maild.rules")
_ev, _cur = Event.__table__, RuleCursor.__table__
NAME = "events"


@dataclass
class _Gap:
    first_seen: datetime
    horizon: int | None = None  # the newest transaction id once min_gap_age had passed


class EventCursor:
    def __init__(self, db: Database, clock: Callable[[], datetime], *, name: str = NAME,
                 min_gap_age: timedelta = timedelta(seconds=2), gap_timeout: timedelta = timedelta(minutes=5)):
        self.db = db
        self.clock = clock
        self.name = name
        self.min_gap_age = min_gap_age
        self.gap_timeout = gap_timeout
        self._gaps: dict[int, _Gap] = {}

    def ensure(self) -> int:
        """Create the cursor at the newest event when there is none (rules start from now, they do not replay
        history on a first start); return its position."""
        with self.db.engine.begin() as conn:
            newest = conn.execute(select(func.max(_ev.c.id))).scalar() or 0
            conn.execute(self.db.insert_ignore(_cur).values(name=self.name, last_event_id=newest,
                                                            updated_at=self.clock()))
        return self.position()

    def position(self) -> int:
        with self.db.engine.connect() as conn:
            return conn.execute(select(_cur.c.last_event_id).where(_cur.c.name == self.name)).scalar() or 0

    def advance(self, event_id: int) -> None:
        """Move forward to `event_id` (never back: a slower engine does not undo a faster one)."""
        with self.db.engine.begin() as conn:
            conn.execute(update(_cur).where(_cur.c.name == self.name, _cur.c.last_event_id < event_id)
                         .values(last_event_id=event_id, updated_at=self.clock()))

    def read(self, limit: int) -> list[Any]:
        """Events after the cursor, in id order, up to the first unsettled gap."""
        after = self.position()
        query = select(_ev).where(_ev.c.id > after).order_by(_ev.c.id).limit(limit)
        if self.db.is_sqlite:
            with self.db.engine.connect() as conn:
                return list(conn.execute(query))
        with self.db.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            snapshot = conn.exec_driver_sql("SELECT pg_current_snapshot()::text").scalar_one()
            rows = list(conn.execute(query))  # the same snapshot as the line above
            xmin = int(snapshot.split(":")[0])  # the transactions older than this one have all ended
            expected = after + 1
            for index, row in enumerate(rows):
                if row.id != expected and not self._settled(expected, xmin):
                    return rows[:index]
                expected = row.id + 1
        return rows

    def _new_transaction_id(self) -> int:
        """A transaction id newer than any handed out before: that of a transaction of its own, which ends at once."""
        with self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            return int(conn.exec_driver_sql("SELECT pg_current_xact_id()::text").scalar_one())

    def _running_here(self, horizon: int) -> int:
        """How many transactions of this database with an id up to `horizon` are still running (other databases'
        transactions cannot hold our events: they do not count)."""
        with self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            return int(conn.exec_driver_sql(_RUNNING_HERE, {"horizon": str(horizon)}).scalar_one())

    def _settled(self, gap: int, xmin: int) -> bool:
        now = self.clock()
        seen = self._gaps.get(gap)
        if seen is None:
            self._gaps[gap] = _Gap(now)
            log.debug("event id %s not visible yet; holding the cursor", gap)
            return False
        age = now - seen.first_seen
        if age < self.min_gap_age:
            return False
        if seen.horizon is None:
            seen.horizon = self._new_transaction_id()
        if xmin > seen.horizon or not self._running_here(seen.horizon):
            del self._gaps[gap]
            return True
        if age >= self.gap_timeout:
            log.warning("passing event id gap at %s after %s: a transaction of this database open since then may "
                        "hold it", gap, age)
            del self._gaps[gap]
            return True
        return False


# The transactions of the server's snapshot (all of them up to the horizon, see above) with an id up to the
# horizon that belong to a session or a prepared transaction of this database. pg_stat_activity shows
# `backend_xid` and `datid` of every session to every role; its 32-bit xid is compared with the low half of the
# snapshot's 64-bit one (two running transactions are never 2^32 apart).
_RUNNING_HERE = """
SELECT count(*) FROM pg_snapshot_xip(pg_current_snapshot()) AS running(xid)
WHERE running.xid <= %(horizon)s::xid8
  AND mod(running.xid::text::bigint, 4294967296) IN (
    SELECT backend_xid::text::bigint FROM pg_stat_activity
    WHERE backend_xid IS NOT NULL AND datid = (SELECT oid FROM pg_database WHERE datname = current_database())
    UNION ALL
    SELECT transaction::text::bigint FROM pg_prepared_xacts WHERE database = current_database())
"""
