"""Appending to the timeline (`events`, append-only) from the business records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from maild.clock import as_utc, utcnow
from maild.store.models import Event

_events = Event.__table__


def append_event(conn: Connection, event_type: str, *, thirdparty_id: int | None, data: dict[str, Any],
                 message_id: int | None = None, occurred_at: datetime | None = None) -> int:
    """One event in the caller's transaction; occurred_at defaults to now (UTC). Returns its id."""
    now = utcnow()
    return int(conn.execute(_events.insert().returning(_events.c.id).values(
        type=event_type, occurred_at=as_utc(occurred_at) or now, recorded_at=now, thirdparty_id=thirdparty_id,
        message_id=message_id, data=data)).scalar_one())
