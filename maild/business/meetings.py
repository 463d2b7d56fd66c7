"""Meetings (agenda events with attendees): add, upsert by UID (invitations), cancel, list, describe.

Times are stored in UTC. Each attendee is {"name", "address", "contact_id", "thirdparty_id", "internal"},
resolved against the directory; internal = one of config.matching.own_domains / own_addresses.
Timeline: `meeting.created` once per meeting, `meeting.updated`, `meeting.cancelled`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, or_, select, update

from maild.business import fields as bf
from maild.business.timeline import append_event
from maild.clock import as_utc, utcnow
from maild.directory import fields
from maild.matchers.normalize import normalize_address
from maild.own_mail import OwnMail
from maild.store.db import Database
from maild.store.models import Contact, MailAddress, Meeting, ThirdParty

_meet, _addr, _contact, _tp = Meeting.__table__, MailAddress.__table__, Contact.__table__, ThirdParty.__table__
STATUSES = ("confirmed", "tentative", "cancelled")


@dataclass(frozen=True)
class MeetingChange:
    meeting_id: int | None
    action: str  # created | updated | unchanged | stale (an older SEQUENCE) | cancelled | unknown


# --- attendees ---------------------------------------------------------------------------------


def parse_attendee(value: str) -> tuple[str | None, str]:
    """`Anna Schmidt <anna@x.example>` or `anna@x.example` -> (name, normalised address); ValueError if none."""
    raw = value.strip()
    name, address = parseaddr(raw) if "<" in raw else ("", raw)
    return (name.strip() or None), fields.address(address or raw)


def resolve_attendees(conn: Connection, people: Iterable[tuple[str | None, str]], own: OwnMail) -> list[dict[str, Any]]:
    """(name, address) pairs -> attendee dicts, each tied to its contact and third party when the address is
    known (a contact's address wins over a general one). Duplicate addresses are kept once."""
    wanted: dict[str, str | None] = {}
    for name, address in people:
        normal = normalize_address(address)
        if normal and normal not in wanted:
            wanted[normal] = name
    known: dict[str, tuple[int, int | None, str | None]] = {}
    if wanted:
        rows = conn.execute(
            select(_addr.c.address, _addr.c.thirdparty_id, _addr.c.contact_id, _contact.c.name)
            .outerjoin(_contact, _contact.c.id == _addr.c.contact_id)
            .where(_addr.c.address.in_(list(wanted)))
            .order_by(_addr.c.contact_id.is_(None), _addr.c.id)).all()
        for address, tp_id, contact_id, contact_name in rows:
            known.setdefault(address, (tp_id, contact_id, contact_name))
    out = []
    for address, name in wanted.items():
        tp_id, contact_id, contact_name = known.get(address, (None, None, None))
        out.append({"name": name or contact_name or "", "address": address, "contact_id": contact_id,
                    "thirdparty_id": tp_id, "internal": own.is_own(address)})
    return out


def external_thirdparty(attendees: Iterable[Mapping[str, Any]]) -> int | None:
    """The one third party the external attendees belong to, or None (none or several)."""
    found = {a.get("thirdparty_id") for a in attendees if not a.get("internal") and a.get("thirdparty_id")}
    return found.pop() if len(found) == 1 else None


# --- writing -----------------------------------------------------------------------------------


def add_meeting(db: Database, own: OwnMail, *, subject: str, start_at: datetime, end_at: datetime,
                thirdparty_id: int | None = None, location: str = "", attendees: Iterable[str] = (),
                organizer: str | None = None, owner: str | None = None, next_steps: Iterable[str] = (),
                uid: str | None = None) -> int:
    """A meeting entered by hand; attendees as `Name <address>` or addresses. Without a third party, the
    one of the external attendees (when they all belong to one) is taken."""
    with db.engine.begin() as conn:
        return add_meeting_in(conn, own, subject=subject, start_at=start_at, end_at=end_at,
                              thirdparty_id=thirdparty_id, location=location, attendees=attendees,
                              organizer=organizer, owner=owner, next_steps=next_steps, uid=uid)


def add_meeting_in(conn: Connection, own: OwnMail, *, subject: str, start_at: datetime, end_at: datetime,
                   thirdparty_id: int | None = None, location: str = "", attendees: Iterable[str] = (),
                   organizer: str | None = None, owner: str | None = None, next_steps: Iterable[str] = (),
                   uid: str | None = None) -> int:
    """`add_meeting` in the caller's transaction (ValueError, and nothing written, when the uid exists)."""
    people = [parse_attendee(a) for a in attendees if a.strip()]
    existing = conn.execute(select(_meet.c.id).where(_meet.c.uid == uid)).scalar() if uid is not None else None
    if existing is not None:
        raise ValueError(f"a meeting with uid {uid!r} already exists (#{existing})")
    resolved = resolve_attendees(conn, people, own)
    change = upsert_meeting_in(
        conn, uid=uid or f"{uuid.uuid4()}@maild", subject=subject, start_at=start_at, end_at=end_at,
        thirdparty_id=thirdparty_id if thirdparty_id is not None else external_thirdparty(resolved),
        location=location, attendees=resolved, organizer=parse_attendee(organizer)[1] if organizer else None,
        owner=owner, next_steps=list(next_steps), force=True)
    if change.action == "created":
        assert change.meeting_id is not None
        return change.meeting_id
    raise ValueError(f"a meeting with uid {uid!r} already exists (#{change.meeting_id})")


def upsert_meeting_in(conn: Connection, *, uid: str, subject: str, start_at: datetime, end_at: datetime,
                      thirdparty_id: int | None = None, location: str | None = "",
                      attendees: list[dict[str, Any]] | None = None, organizer: str | None = None,
                      owner: str | None = None, sequence: int = 0, next_steps: list[str] | None = None,
                      status: str = "confirmed", message_id: int | None = None, force: bool = False,
                      create_only: bool = False, event_data: Mapping[str, Any] | None = None) -> MeetingChange:
    """Create the meeting `uid` or update it when `sequence` is higher than the stored one (`force`: always,
    as an import does; `create_only`: never). A None third party or attendees list keeps the stored one.
    `event_data`: added to the data of the `meeting.created` / `meeting.updated` event (e.g. what was left out)."""
    clean_uid = fields.text(uid, "meeting uid", 500, required=True)
    clean_subject = fields.text(subject, "subject", 10_000) or ""
    start, end = _aware(start_at, "start"), _aware(end_at, "end")
    if end < start:
        raise ValueError(f"the meeting ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    if status not in STATUSES:
        raise ValueError(f"unknown meeting status {status!r}: use {', '.join(STATUSES)}")
    if thirdparty_id is not None and conn.execute(select(_tp.c.id).where(_tp.c.id == thirdparty_id)).first() is None:
        raise LookupError(f"no third party with id {thirdparty_id}")
    values: dict[str, Any] = {
        "subject": clean_subject, "location": fields.text(location, "location", 10_000) or "", "start_at": start,
        "end_at": end, "status": status, "sequence": sequence}
    if attendees is not None:
        values["attendees"] = attendees
    if thirdparty_id is not None:
        values["thirdparty_id"] = thirdparty_id
    if organizer is not None:
        values["organizer"] = fields.text(organizer, "organizer", 320)
    if owner is not None:
        values["owner"] = fields.text(owner, "owner", 200)
    if next_steps is not None:
        values["next_steps"] = fields.labels(next_steps, "next step", 1000)
    if message_id is not None:
        values["message_id"] = message_id
    existing = conn.execute(select(_meet).where(_meet.c.uid == clean_uid)).first()
    now = utcnow()
    if existing is None:
        meeting_id = int(conn.execute(_meet.insert().returning(_meet.c.id).values(
            uid=clean_uid, created_at=now, updated_at=now, **{"attendees": [], "next_steps": [], **values}))
            .scalar_one())
        append_event(conn, "meeting.created", thirdparty_id=values.get("thirdparty_id"), message_id=message_id,
                     occurred_at=now, data={"meeting_id": meeting_id, "subject": clean_subject,
                                            "start_at": start.isoformat(), "end_at": end.isoformat(),
                                            **(event_data or {})})
        return MeetingChange(meeting_id, "created")
    if create_only or (not force and sequence < existing.sequence):
        return MeetingChange(existing.id, "stale")
    if not force and sequence == existing.sequence and status in (existing.status, "confirmed") \
            and existing.status in (status, "cancelled"):  # a repeat, or the request a cancel of it overtook
        return MeetingChange(existing.id, "unchanged")
    values["sequence"] = max(sequence, existing.sequence)
    diff = {k: v for k, v in values.items() if _differs(getattr(existing, k), v)}
    if not diff:
        return MeetingChange(existing.id, "unchanged")
    conn.execute(update(_meet).where(_meet.c.id == existing.id).values(**diff, updated_at=now))
    tp_id = diff.get("thirdparty_id", existing.thirdparty_id)
    event = "meeting.cancelled" if diff.get("status") == "cancelled" else "meeting.updated"
    append_event(conn, event, thirdparty_id=tp_id, message_id=message_id, occurred_at=now, data={
        "meeting_id": existing.id, "subject": diff.get("subject", existing.subject),
        "start_at": start.isoformat(), "end_at": end.isoformat(), "sequence": sequence,
        "changed": sorted(diff), **(event_data or {})})
    return MeetingChange(existing.id, "cancelled" if event == "meeting.cancelled" else "updated")


def cancel_meeting(db: Database, ref: str) -> bool:
    """Cancel a meeting by id or uid; False when it already was cancelled."""
    with db.engine.begin() as conn:
        row = find_meeting(conn, ref)
        return cancel_meeting_in(conn, row.uid).action == "cancelled"


def cancel_meeting_in(conn: Connection, uid: str, *, sequence: int | None = None,
                      message_id: int | None = None) -> MeetingChange:
    """Cancel the meeting `uid` (when `sequence` is given, only if it is not older than the stored one)."""
    row = conn.execute(select(_meet).where(_meet.c.uid == uid)).first()
    if row is None:
        return MeetingChange(None, "unknown")
    if sequence is not None and sequence < row.sequence:
        return MeetingChange(row.id, "stale")
    if row.status == "cancelled":
        return MeetingChange(row.id, "unchanged")
    now = utcnow()
    new_sequence = max(row.sequence, sequence or 0)
    changed = conn.execute(update(_meet).where(_meet.c.id == row.id, _meet.c.status != "cancelled")
                           .values(status="cancelled", sequence=new_sequence, updated_at=now)).rowcount
    if not changed:
        return MeetingChange(row.id, "unchanged")
    append_event(conn, "meeting.cancelled", thirdparty_id=row.thirdparty_id, message_id=message_id, occurred_at=now,
                 data={"meeting_id": row.id, "subject": row.subject, "start_at": as_utc(row.start_at).isoformat(),
                       "end_at": as_utc(row.end_at).isoformat(), "sequence": new_sequence})
    return MeetingChange(row.id, "cancelled")


# --- reading -----------------------------------------------------------------------------------


def follow_message(conn: Connection, message_id: int, previous: int | None, thirdparty_id: int) -> int:
    """The message was assigned to `thirdparty_id` by hand: the meetings its invitation created, whose third
    party came from that message's old decision (`previous`, or none), go with it. Returns how many moved."""
    owned = _meet.c.thirdparty_id.is_(None) if previous is None else \
        or_(_meet.c.thirdparty_id.is_(None), _meet.c.thirdparty_id == previous)
    rows = conn.execute(select(_meet).where(_meet.c.message_id == message_id, owned,
                                            _meet.c.thirdparty_id.is_distinct_from(thirdparty_id))).all()
    now = utcnow()
    for row in rows:
        conn.execute(update(_meet).where(_meet.c.id == row.id).values(thirdparty_id=thirdparty_id, updated_at=now))
        append_event(conn, "meeting.updated", thirdparty_id=thirdparty_id, message_id=message_id, occurred_at=now,
                     data={"meeting_id": row.id, "subject": row.subject, "start_at": _iso(row.start_at),
                           "end_at": _iso(row.end_at), "sequence": row.sequence, "changed": ["thirdparty_id"]})
    return len(rows)


def _iso(value: datetime) -> str:
    return (as_utc(value) or value).isoformat()


def find_meeting(conn: Connection, ref: str) -> Any:
    """The meeting with this uid, or (a number, `#12`) this id."""
    return bf.find_row(conn, _meet, _meet.c.uid, ref, "meeting")


def list_meetings(db: Database, *, thirdparty_id: int | None = None, upcoming: bool = False,
                  include_cancelled: bool = True, now: datetime | None = None) -> list[dict[str, Any]]:
    """Meetings by start time; `upcoming`: those not yet ended."""
    query = (select(_meet, _tp.c.name.label("thirdparty_name")).outerjoin(_tp, _tp.c.id == _meet.c.thirdparty_id)
             .order_by(_meet.c.start_at, _meet.c.id))
    if thirdparty_id is not None:
        query = query.where(_meet.c.thirdparty_id == thirdparty_id)
    if upcoming:
        query = query.where(_meet.c.end_at >= (now or utcnow()))
    if not include_cancelled:
        query = query.where(_meet.c.status != "cancelled")
    with db.engine.connect() as conn:
        return [{**meeting_fields(row), "thirdparty_name": row.thirdparty_name} for row in conn.execute(query)]


def describe_meeting(db: Database, ref: str) -> dict[str, Any]:
    with db.engine.connect() as conn:
        row = find_meeting(conn, ref)
        name = conn.execute(select(_tp.c.name).where(_tp.c.id == row.thirdparty_id)).scalar() \
            if row.thirdparty_id else None
    return {**meeting_fields(row), "thirdparty_name": name}


def meeting_fields(row: Any) -> dict[str, Any]:
    return {"id": row.id, "uid": row.uid, "sequence": row.sequence, "status": row.status, "subject": row.subject,
            "location": row.location, "start_at": as_utc(row.start_at), "end_at": as_utc(row.end_at),
            "thirdparty_id": row.thirdparty_id, "organizer": row.organizer, "owner": row.owner,
            "attendees": list(row.attendees or []), "next_steps": list(row.next_steps or []),
            "message_id": row.message_id, "created_at": as_utc(row.created_at), "updated_at": as_utc(row.updated_at)}


def meeting_context(conn: Connection, meeting: Any, zone: str = "UTC") -> dict[str, Any]:
    """The template and rule view of a meeting (a row or its id), times also in `zone` (config.rules.timezone).

    Keys as in maild/templates/sample.py (date, subject, location, attendees as names, next_steps), plus id,
    uid, status, start_at/end_at (UTC), start/end (local), thirdparty_id, organizer, owner,
    participants (the attendee dicts) and external_attendees (the participants not internal)."""
    row = find_meeting(conn, str(meeting)) if isinstance(meeting, int) else meeting
    base = meeting_fields(row)
    local = ZoneInfo(zone)
    start, end = base["start_at"].astimezone(local), base["end_at"].astimezone(local)
    participants = base["attendees"]
    return {**base, "date": start.date(), "start": start, "end": end,
            "attendees": [a.get("name") or a.get("address") for a in participants], "participants": participants,
            "external_attendees": [a for a in participants if not a.get("internal")]}


def _aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise ValueError(f"the meeting's {what} is not a time: {value!r}")
    if value.tzinfo is None:
        raise ValueError(f"the meeting's {what} must carry a timezone")
    utc = as_utc(value)
    assert utc is not None
    return utc


def _differs(old: Any, new: Any) -> bool:
    if isinstance(new, datetime):
        return as_utc(old) != new
    return bool(old != new)
