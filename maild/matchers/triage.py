"""The triage queue: messages no matcher could tie to one third party, and assigning them by hand.

Assigning records the decision (status `assigned`), a `mail.assigned` event on the third party's
timeline, optionally learns the sender as a contact (so the next mail matches by address), and
re-plans filing: a move still pending is redirected to the customer's folder; a message already
filed into the triage folder gets a task with `from_folder` set, which the folder worker carries out
by finding the message there by its Message-ID (maild/filing/refile.py). A meeting created from the
message's invitation goes with it, unless its third party was set otherwise; an invitation refused because
nobody knew its sender is taken now (a person vouched for the mail; one that failed authentication is not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from maild.business.meetings import follow_message
from maild.clock import utcnow
from maild.matchers.normalize import name_key, normalize_address
from maild.matchers.stage import MatchingStage
from maild.store.db import Database
from maild.store.models import Contact, Event, FilingTask, MailAddress, Message, MessageMatch, ThirdParty

_m, _mm, _ft = Message.__table__, MessageMatch.__table__, FilingTask.__table__
QUEUE = ("unmatched", "ambiguous")


@dataclass(frozen=True)
class Assignment:
    message_id: int
    thirdparty_id: int
    learned_contact_id: int | None
    refiled: int


def queue(db: Database, limit: int = 200) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(
            select(_m.c.id, _m.c.date, _m.c.from_addr, _m.c.subject, _mm.c.status, _mm.c.reason)
            .join(_mm, _mm.c.message_id == _m.c.id).where(_mm.c.status.in_(QUEUE))
            .order_by(_m.c.id).limit(limit)))


def assign(db: Database, stage: MatchingStage, message_id: int, thirdparty_id: int, learn: bool) -> Assignment:
    with db.engine.begin() as conn:
        return assign_in(conn, stage, message_id, thirdparty_id, learn)


def assign_in(conn: Any, stage: MatchingStage, message_id: int, thirdparty_id: int, learn: bool) -> Assignment:
    """`assign` in the caller's transaction (the web app writes its audit entry in the same one)."""
    now = utcnow()
    message = conn.execute(select(_m).where(_m.c.id == message_id)).one_or_none()
    if message is None:
        raise LookupError(f"no message {message_id}")
    name = conn.execute(select(ThirdParty.__table__.c.name)
                        .where(ThirdParty.__table__.c.id == thirdparty_id)).scalar()
    if name is None:
        raise LookupError(f"no third party {thirdparty_id}")
    contact_id = _learn(conn, message, thirdparty_id) if learn else None
    previous = _decided_thirdparty(conn, message_id)
    values = {"status": "assigned", "thirdparty_id": thirdparty_id, "contact_id": contact_id,
              "matcher": "triage", "confidence": 1.0, "reason": f"assigned by hand to {name}", "decided_at": now}
    if conn.execute(update(_mm).where(_mm.c.message_id == message_id).values(**values)).rowcount == 0:
        conn.execute(_mm.insert().values(message_id=message_id, verdicts=[], **values))
    conn.execute(Event.__table__.insert().values(
        type="mail.assigned", occurred_at=now, recorded_at=now, thirdparty_id=thirdparty_id,
        message_id=message_id, data={"learned_contact_id": contact_id, "subject": message.subject}))
    refiled = _replan_filing(conn, stage, message_id)
    follow_message(conn, message_id, previous, thirdparty_id)
    # A person vouched for the mail: an invitation refused for its unknown sender is taken now.
    stage.invitations.record(conn, {message_id: thirdparty_id}, vouched=True)
    return Assignment(message_id, thirdparty_id, contact_id, refiled)


def _learn(conn: Any, message: Any, thirdparty_id: int) -> int | None:
    address = normalize_address(message.from_addr)
    if address is None:
        return None
    addr = MailAddress.__table__
    known = conn.execute(select(addr.c.contact_id).where(addr.c.address == address,
                                                         addr.c.thirdparty_id == thirdparty_id)).first()
    if known is not None:
        return known[0]
    name = message.from_name or address
    contact_id = conn.execute(Contact.__table__.insert().returning(Contact.__table__.c.id).values(
        thirdparty_id=thirdparty_id, name=name, name_key=name_key(name), phones=[], created_at=utcnow())).scalar_one()
    conn.execute(addr.insert().values(address=address, thirdparty_id=thirdparty_id, contact_id=contact_id))
    return contact_id


def _replan_filing(conn: Any, stage: MatchingStage, message_id: int) -> int:
    """Pending triage moves are dropped and planned again; finished ones become `refile` tasks."""
    tasks = conn.execute(select(_ft).where(_ft.c.message_id == message_id).order_by(_ft.c.id)).all()
    conn.execute(_ft.delete().where(_ft.c.message_id == message_id, _ft.c.status != "done"))
    planned = stage.plan_filing(conn, {message_id: _decided_thirdparty(conn, message_id)})
    for task in tasks:
        if task.status == "done" and task.action == "move" and task.target_folder:
            conn.execute(update(_ft).where(_ft.c.message_id == message_id, _ft.c.location_id == task.location_id,
                                           _ft.c.status == "pending")
                         .values(from_folder=task.filed_folder or task.target_folder))
    return planned


def _decided_thirdparty(conn: Any, message_id: int) -> int | None:
    return conn.execute(select(_mm.c.thirdparty_id).where(_mm.c.message_id == message_id)).scalar()


def explain(db: Database, message_id: int) -> dict[str, Any]:
    with db.engine.connect() as conn:
        message = conn.execute(select(_m).where(_m.c.id == message_id)).one_or_none()
        if message is None:
            raise LookupError(f"no message {message_id}")
        decision = conn.execute(select(_mm).where(_mm.c.message_id == message_id)).one_or_none()
        tasks = conn.execute(select(_ft).where(_ft.c.message_id == message_id).order_by(_ft.c.id)).all()
        ev = Event.__table__
        meetings = conn.execute(select(ev.c.type, ev.c.data).where(ev.c.message_id == message_id,
                                                                   ev.c.type.like("meeting.%")).order_by(ev.c.id)).all()
        names = dict(conn.execute(select(ThirdParty.__table__.c.id, ThirdParty.__table__.c.name)).all()) \
            if decision is not None else {}
        from maild.store.models import Bounce

        bounces = conn.execute(select(Bounce.__table__).where(Bounce.__table__.c.message_id == message_id)
                               .order_by(Bounce.__table__.c.id)).all()
    return {
        "message": {"id": message.id, "message_id": message.header_message_id, "from": message.from_addr,
                    "subject": message.subject, "date": str(message.date) if message.date else None},
        "decision": None if decision is None else {
            "status": decision.status, "thirdparty": names.get(decision.thirdparty_id),
            "thirdparty_id": decision.thirdparty_id, "contact_id": decision.contact_id,
            "matcher": decision.matcher, "confidence": decision.confidence, "reason": decision.reason},
        "verdicts": [] if decision is None else decision.verdicts,
        "filing": [{"action": t.action, "folder": t.target_folder, "filed_folder": t.filed_folder, "status": t.status,
                    "attempts": t.attempts, "last_error": t.last_error} for t in tasks],
        # pass | fail | none per the trusted server's Authentication-Results; None: not read (none configured)
        "authentication": {"status": message.auth, "reason": message.auth_reason},
        "meetings": [{"event": row.type, **dict(row.data or {})} for row in meetings],
        # human | bounce | auto_reply | ... with the detectors' reasons (maild/classify); None: not classified;
        # backfilled: classified after it was stored (maild/classify/backfill.py)
        "machine": {"kind": message.kind, **{k: (message.machine or {}).get(k) for k in ("reasons", "return_date")},
                    "backfilled": bool((message.machine or {}).get("backfilled"))},
        "bounces": [{"address": b.address, "action": b.action, "status": b.status, "reason": b.reason,
                     "diagnostic": b.diagnostic, "hard": b.hard, "counted": b.counted, "outbox_id": b.outbox_id}
                    for b in bounces],
    }
