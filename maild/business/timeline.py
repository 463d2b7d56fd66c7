"""Appending to the timeline (`events`, append-only) from the business records.

An event written while a rule action is carried out (`caused_by(key)`) names that action's ledger key as its
`cause`, so the rules engine can tell how many rule actions led to it (and stop rules that trigger each other).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from maild.clock import as_utc, utcnow
from maild.store.models import Event

_events = Event.__table__
_cause: ContextVar[str | None] = ContextVar("maild_event_cause", default=None)


@contextmanager
def caused_by(key: str) -> Iterator[None]:
    """Events appended inside the block carry `data.cause = key` (the rule action's ledger key)."""
    token = _cause.set(key)
    try:
        yield
    finally:
        _cause.reset(token)


def append_event(conn: Connection, event_type: str, *, thirdparty_id: int | None, data: dict[str, Any],
                 message_id: int | None = None, occurred_at: datetime | None = None) -> int:
    """One event in the caller's transaction; occurred_at defaults to now (UTC). Returns its id."""
    cause = _cause.get()
    if cause is not None and "cause" not in data:
        data = {**data, "cause": cause}
    now = utcnow()
    return int(conn.execute(_events.insert().returning(_events.c.id).values(
        type=event_type, occurred_at=as_utc(occurred_at) or now, recorded_at=now, thirdparty_id=thirdparty_id,
        message_id=message_id, data=data)).scalar_one())
