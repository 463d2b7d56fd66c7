"""Repeated opens and clicks: one client's hits of one mail within `tracking.repeat_window` make one event.

The first open of a mail by a client (IP prefix + user agent), and its first click of each link, is an event
on the timeline (and a rule trigger). The same client's repeats within the window after it are counted on
that event's `tracking_hits` row (`hits`, `last_at`): a flood is one timeline line with its exact count, and
one trigger. A hit after the window starts a new event. Used by the recorder's writer thread only: the
windows it knows are cached (the rows are read once per key, then kept up to CACHE_SIZE keys).

Two daemons answering the same client at the same moment may each start a window (two events); the counts
stay exact, as each hit is added to exactly one row.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, func, select, tuple_, update

from maild.clock import as_utc
from maild.store.models import Event, TrackingHits

Key = tuple[int, str, int, str]  # (outbox id, kind "o"/"c", link index or -1, client key)

_events, _hits = Event.__table__, TrackingHits.__table__
_INSERT_EVENTS = _events.insert().returning(_events.c.id, sort_by_parameter_order=True)
_INSERT_HITS = _hits.insert().returning(_hits.c.id, sort_by_parameter_order=True)
_BUMP = (update(_hits).where(_hits.c.id == bindparam("row_id"))
         .values(hits=_hits.c.hits + bindparam("more"), last_at=bindparam("last")))
CACHE_SIZE = 10_000


@dataclass
class _Window:
    first_at: datetime
    row_id: int | None  # None: started in the group being written
    new_index: int = -1  # its place among the group's new rows


class RepeatCounter:
    def __init__(self, window_seconds: float) -> None:
        self.window = timedelta(seconds=window_seconds)
        self._known: OrderedDict[Key, _Window] = OrderedDict()
        self._pending: dict[Key, _Window] = {}

    def read(self, conn: Connection, hits: list[tuple[Key, datetime]]) -> None:
        """Before the write transaction: load the open windows of keys not known yet (one query)."""
        if not self.window or not hits:
            return
        missing = {key for key, _at in hits if key not in self._known}
        if not missing:
            return
        since = min(at for _key, at in hits) - self.window
        query = select(_hits.c.id, _hits.c.outbox_id, _hits.c.kind, _hits.c.link, _hits.c.client, _hits.c.first_at) \
            .where(and_(tuple_(_hits.c.outbox_id, _hits.c.client).in_(sorted({(key[0], key[3]) for key in missing})),
                        _hits.c.first_at > since))  # the pairs probe the index; two IN lists probed their product
        for row_id, outbox_id, kind, link, client, first_at in conn.execute(query):
            key = (outbox_id, kind, link, client)
            first = as_utc(first_at)
            if key in missing and first is not None:
                known = self._known.get(key)
                if known is None or first > known.first_at:
                    self._known[key] = _Window(first, row_id)
        self._trim()

    def write(self, conn: Connection, items: list[tuple[Key, datetime, dict[str, Any]]]) -> int:
        """Inside the write transaction: insert the events that start a window, count the repeats on their rows.
        Returns how many events were inserted. Call `committed()` once the transaction has committed."""
        self._pending = {}
        if not self.window:
            if items:
                conn.execute(_events.insert(), [row for _key, _at, row in items])
            return len(items)
        windows: dict[Key, _Window] = {}
        events: list[dict[str, Any]] = []
        counts: list[dict[str, Any]] = []
        bumps: dict[int, dict[str, Any]] = {}
        for key, at, row in items:
            current = windows.get(key) or self._known.get(key)
            if current is not None and at < current.first_at + self.window:
                if current.row_id is None:
                    counts[current.new_index].update(hits=counts[current.new_index]["hits"] + 1, last_at=at)
                else:
                    bump = bumps.setdefault(current.row_id, {"row_id": current.row_id, "more": 0, "last": at})
                    bump.update(more=bump["more"] + 1, last=at)
                windows[key] = current
                continue
            windows[key] = _Window(at, None, len(events))
            events.append(row)
            counts.append({"outbox_id": key[0], "kind": key[1], "link": key[2], "client": key[3], "first_at": at,
                           "last_at": at, "hits": 1})
        if events:
            event_ids = _inserted_ids(conn, _events, _INSERT_EVENTS, events)
            row_ids = _inserted_ids(conn, _hits, _INSERT_HITS, [
                {**count, "event_id": event_id} for count, event_id in zip(counts, event_ids, strict=True)])
            for window in windows.values():
                if window.row_id is None:
                    window.row_id = row_ids[window.new_index]
        if bumps:
            conn.execute(_BUMP, list(bumps.values()))
        self._pending = windows
        return len(events)

    def committed(self) -> None:
        """The transaction of the last `write` committed: its windows are known from now on."""
        for key, window in self._pending.items():
            self._known[key] = window
            self._known.move_to_end(key)
        self._pending = {}
        self._trim()

    def _trim(self) -> None:
        while len(self._known) > CACHE_SIZE:
            self._known.popitem(last=False)


def _inserted_ids(conn: Connection, table: Table, returning: Any, rows: list[dict[str, Any]]) -> list[int]:
    """INSERT the rows; their ids, in the rows' order. PostgreSQL: one batched INSERT .. RETURNING. SQLite, where
    SQLAlchemy keeps RETURNING in order only one row per statement: one executemany, then the ids counted back
    from the largest. Sound because SQLite has one writer: from this transaction's first INSERT on it holds the
    write lock, and each new row of an INTEGER PRIMARY KEY table gets the largest id so far plus one."""
    if conn.dialect.name != "sqlite":
        return list(conn.execute(returning, rows).scalars().all())
    conn.execute(table.insert(), rows)
    last = int(conn.execute(select(func.max(table.c.id))).scalar_one())
    return list(range(last - len(rows) + 1, last + 1))
