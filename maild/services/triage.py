"""The triage queue for people: list it, assign mail (with learn, several at once), create a third party or a contact
from a sender. Each change is audited in its own transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from maild.config import Config
from maild.directory import changes, writes
from maild.matchers import triage as queue_ops
from maild.matchers.normalize import normalize_address
from maild.matchers.stage import MatchingStage
from maild.services import audit, paging
from maild.services.actor import Actor
from maild.store.db import Database
from maild.store.models import Message, MessageMatch

_m, _mm = Message.__table__, MessageMatch.__table__


def queue(db: Database, *, cursor: str | None = None, limit: int = 50) -> paging.Page[dict[str, Any]]:
    """Waiting mail, oldest first: id, date, sender, subject, why it waits."""
    stmt = (select(_m.c.id, _m.c.date, _m.c.from_addr, _m.c.from_name, _m.c.subject, _mm.c.status, _mm.c.reason)
            .join(_mm, _mm.c.message_id == _m.c.id).where(_mm.c.status.in_(queue_ops.QUEUE)))
    return paging.by_id(db, stmt, _m.c.id, cursor, limit, lambda r: {
        "id": r.id, "date": r.date.isoformat() if r.date else None, "from": r.from_addr, "from_name": r.from_name,
        "subject": r.subject or "", "status": r.status, "reason": r.reason}, newest_first=False)


def assign(db: Database, config: Config, actor: Actor, message_ids: list[int], thirdparty_id: int,
           learn: bool) -> list[queue_ops.Assignment]:
    """Tie each message to the third party (learning its sender as a contact with `learn`); one transaction for all,
    so a bad id assigns none."""
    actor.require("staff")
    stage = MatchingStage(config, db)
    done = []
    with db.engine.begin() as conn:
        for message_id in message_ids:
            before = conn.execute(select(_mm.c.status, _mm.c.thirdparty_id)
                                  .where(_mm.c.message_id == message_id)).one_or_none()
            result = queue_ops.assign_in(conn, stage, message_id, thirdparty_id, learn)
            audit.record(conn, actor, "triage.assign", f"message:{message_id}",
                         before=None if before is None else {"status": before.status,
                                                             "thirdparty_id": before.thirdparty_id},
                         after={"status": "assigned", "thirdparty_id": thirdparty_id, "learn": learn,
                                "learned_contact_id": result.learned_contact_id})
            done.append(result)
    return done


def create_from_sender(db: Database, config: Config, actor: Actor, message_id: int, *, name: str | None = None,
                       thirdparty_id: int | None = None) -> queue_ops.Assignment:
    """A new third party named `name` (or, with `thirdparty_id`, that existing one) gets the sender as a contact, and
    the message is assigned to it: the sender's next mail matches by address."""
    actor.require("staff")
    stage = MatchingStage(config, db)
    with db.engine.begin() as conn:
        message = conn.execute(select(_m.c.from_addr, _m.c.from_name).where(_m.c.id == message_id)).one_or_none()
        if message is None:
            raise LookupError(f"no message {message_id}")
        address = normalize_address(message.from_addr)
        if address is None:
            raise ValueError(f"message {message_id} has no usable sender address")
        created = thirdparty_id is None
        if thirdparty_id is None:
            company = (name or "").strip() or (message.from_name or "").strip() or address
            item = changes.thirdparty(external_id=None, name=company, kind="customer", tags=[], custom_fields={},
                                      owner=None, language=None, domains=[], addresses=[])
            thirdparty_id = writes.upsert_thirdparties(conn, [item])[0][0]
            audit.record(conn, actor, "thirdparty.create", f"thirdparty:{thirdparty_id}",
                         after={"name": company, "from_message": message_id})
        result = queue_ops.assign_in(conn, stage, message_id, thirdparty_id, learn=True)
        audit.record(conn, actor, "triage.assign", f"message:{message_id}",
                     after={"status": "assigned", "thirdparty_id": thirdparty_id, "learn": True,
                            "learned_contact_id": result.learned_contact_id, "created_thirdparty": created})
    return result
