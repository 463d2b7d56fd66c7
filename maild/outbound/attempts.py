"""The delivery story of an outbox row: one `outbox_attempts` record per attempt or decision, and the
timeline events of sends that failed (`mail.refused`, `mail.send_failed`), written in the caller's transaction."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from maild.business.timeline import append_event
from maild.clock import utcnow
from maild.store.db import Database
from maild.store.models import OutboxAttempt, OutboxMessage

A = OutboxAttempt.__table__
T = OutboxMessage.__table__
# The outbox columns an attempt or a failure event needs (select them with the row being changed).
COLUMNS = (T.c.id, T.c.thirdparty_id, T.c.idempotency_key, T.c.recipients, T.c.subject, T.c.header_message_id,
           T.c.data_started_at, T.c.data_connection)
_CODE = re.compile(r"^\s*([2-5]\d\d)\b")


def reply_code(reply: str | None) -> int | None:
    """The SMTP code at the start of a reply ("451 4.7.1 greylisted" -> 451), None without one."""
    match = _CODE.match(reply or "")
    return int(match.group(1)) if match else None


def record(conn: Connection, rows: Sequence[Any], outcome: str, *, reply: str | None = None,
           detail: str | None = None, at: datetime | None = None, replies: dict[int, str] | None = None) -> None:
    """One attempt record per row (selected with COLUMNS); `replies` gives a reply per row id instead of `reply`."""
    if not rows:
        return
    now = at or utcnow()
    values = []
    for row in rows:
        text = replies.get(row.id) if replies is not None else reply
        values.append({"outbox_id": row.id, "at": now, "outcome": outcome, "data_started_at": row.data_started_at,
                       "connection": row.data_connection, "reply_code": reply_code(text), "reply": text,
                       "detail": detail})
    conn.execute(A.insert(), values)


def failure_event(conn: Connection, row: Any, outcome: str, reason: str, reply: str | None = None) -> None:
    """The third party's timeline shows the failed send: `mail.refused` (the server said no for good) or
    `mail.send_failed` (outcome `failed`: given up or unsendable; `ambiguous`: DATA began, no reply known)."""
    data: dict[str, Any] = {"outbox_id": row.id, "key": row.idempotency_key, "to": list(row.recipients),
                            "subject": row.subject, "message_id": row.header_message_id, "reason": reason}
    if reply:
        data["reply"] = reply
    if outcome == "ambiguous" and row.data_started_at is not None:
        data["data_started_at"] = row.data_started_at.isoformat()
        data["connection"] = row.data_connection
    if outcome != "refused":
        data["outcome"] = outcome
    append_event(conn, "mail.refused" if outcome == "refused" else "mail.send_failed",
                 thirdparty_id=row.thirdparty_id, data=data)


def story(db: Database, outbox_id: int) -> list[OutboxAttempt]:
    """Every attempt and decision recorded for the row, oldest first."""
    with db.session() as session:
        return list(session.exec(select(OutboxAttempt).where(A.c.outbox_id == outbox_id)
                                 .order_by(A.c.at, A.c.id)).scalars())
