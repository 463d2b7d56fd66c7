"""The outbox for people: send a mail, send what is due, retry and cancel (all audited, each in the transaction
of its change), rows by status and a message's delivery story."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from maild.clock import as_utc
from maild.config import Config
from maild.outbound import outbox as ob
from maild.outbound.prepared import PreparedMail
from maild.outbound.queueing import queue
from maild.services import audit, paging
from maild.services.actor import Actor
from maild.store.db import Database
from maild.store.models import Event, OutboxAttempt, OutboxMessage

if TYPE_CHECKING:
    from maild.outbound.sender import OutboxSender

_o, _ev, _att = OutboxMessage.__table__, Event.__table__, OutboxAttempt.__table__
STATUSES = ob.STATUSES  # the outbox's own list (ambiguous included)


def _row(r: Any) -> dict[str, Any]:
    return {"id": r.id, "status": r.status, "template": r.template, "thirdparty_id": r.thirdparty_id,
            "sender": r.sender, "recipients": list(r.recipients or []), "subject": r.subject,
            "attempts": r.attempts, "last_error": r.last_error, "smtp_reply": r.smtp_reply,
            "created_at": _iso(r.created_at), "sent_at": _iso(r.sent_at), "next_attempt_at": _iso(r.next_attempt_at),
            "idempotency_key": r.idempotency_key, "data_started_at": _iso(r.data_started_at)}


def listing(db: Database, *, status: str | None = None, cursor: str | None = None,
            limit: int = 50) -> paging.Page[dict[str, Any]]:
    """Newest first."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r} (expected one of: {', '.join(STATUSES)})")
    stmt = select(_o).where(_o.c.status == status) if status else select(_o)
    return paging.by_id(db, stmt, _o.c.id, cursor, limit, _row)


def story(db: Database, outbox_id: int) -> dict[str, Any]:
    """The row, every attempt and decision about it (outbox_attempts: SMTP replies, connections, requeues), and its
    events (sent, refused, opened, clicked) in order: what happened to the mail."""
    with db.engine.connect() as conn:
        row = conn.execute(select(_o).where(_o.c.id == outbox_id)).one_or_none()
        if row is None:
            raise LookupError(f"no outbox row {outbox_id}")
        tries = conn.execute(select(_att).where(_att.c.outbox_id == outbox_id).order_by(_att.c.id)).all()
        events = conn.execute(select(_ev.c.id, _ev.c.type, _ev.c.occurred_at, _ev.c.data)
                              .where(_ev.c.type.in_(("mail.sent", "mail.opened", "mail.clicked", "mail.refused",
                                                     "mail.send_failed")),
                                     _ev.c.thirdparty_id == row.thirdparty_id if row.thirdparty_id else _ev.c.id > 0)
                              .order_by(_ev.c.id.desc()).limit(500)).all()
    mine = [{"id": e.id, "type": e.type, "at": _iso(e.occurred_at), "data": e.data} for e in events
            if (e.data or {}).get("outbox_id") == outbox_id][::-1]
    attempts = [{"at": _iso(a.at), "outcome": a.outcome, "data_started_at": _iso(a.data_started_at),
                 "connection": a.connection, "reply_code": a.reply_code, "reply": a.reply, "detail": a.detail}
                for a in tries]
    return {**_row(row), "events": mine, "attempt_log": attempts}


def queue_mail(db: Database, config: Config, actor: Actor, mail: PreparedMail, *, key: str,
               template: str) -> tuple[int, bool]:
    """Queue a prepared mail (`maild send`, `POST /api/v1/send`): (outbox id, created). The row and its
    `outbox.send` audit entry commit together; a key queued before changes nothing and is not audited."""
    actor.require("staff")

    def audited(conn: Connection, results: list[tuple[int, bool]]) -> None:
        [(outbox_id, created)] = results
        if created:
            audit.record(conn, actor, "outbox.send", f"outbox:{outbox_id}",
                         after={"template": template, "to": mail.recipient.address, "key": key})

    return queue(config, db, mail, key=key, template=template, also=audited)


async def send_due(actor: Actor, sender: OutboxSender, limit: int = 100) -> dict[str, int]:
    """One sending pass a person asked for (`maild send`, `maild outbox send-due`): the rows it claims and its
    `outbox.send_due` audit entry commit together; a pass with nothing due changes nothing and is not audited."""
    actor.require("staff")

    def audited(conn: Connection, ids: list[int]) -> None:
        audit.record(conn, actor, "outbox.send_due", "outbox", after={"claimed": ids, "limit": limit})

    return await sender.send_due(limit, on_claim=audited)


def _change(db: Database, actor: Actor, outbox_id: int, verb: str) -> bool:
    actor.require("staff")
    with db.engine.begin() as conn:
        before = conn.execute(select(_o.c.status, _o.c.attempts).where(_o.c.id == outbox_id)).one_or_none()
        if before is None:
            raise LookupError(f"no outbox row {outbox_id}")
        changed = {"retry": ob.retry_in, "cancel": ob.cancel_in, "mark_sent": ob.mark_sent_by_person_in}[verb](
            conn, outbox_id)
        if changed:
            after = conn.execute(select(_o.c.status, _o.c.attempts).where(_o.c.id == outbox_id)).one()
            audit.record(conn, actor, f"outbox.{verb}", f"outbox:{outbox_id}",
                         before={"status": before.status, "attempts": before.attempts},
                         after={"status": after.status, "attempts": after.attempts})
    return changed


def retry(db: Database, actor: Actor, outbox_id: int) -> bool:
    """Queue a failed, ambiguous or cancelled mail again; False when it is in another state."""
    return _change(db, actor, outbox_id, "retry")


def mark_sent(db: Database, actor: Actor, outbox_id: int) -> bool:
    """A person checked that an ambiguous mail arrived: record it as sent; False when it is not ambiguous."""
    return _change(db, actor, outbox_id, "mark_sent")


def cancel(db: Database, actor: Actor, outbox_id: int) -> bool:
    """Withdraw a queued mail (or one waiting for a retry); False when it is in another state."""
    return _change(db, actor, outbox_id, "cancel")


def _iso(value: Any) -> str | None:
    moment = as_utc(value)
    return moment.isoformat() if moment else None
