from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from maild.business import meetings
from maild.business.fields import moment
from maild.business.meetings import OwnMail
from maild.directory import service
from maild.store.db import Database
from tests.business.helpers import customer, events

OWN = OwnMail(frozenset({"nordlicht.example"}), frozenset({"boss@gmail.example"}))
START = datetime(2026, 11, 19, 13, 0, tzinfo=UTC)


def test_add_resolves_attendees_and_takes_their_third_party(db: Database) -> None:
    tp = customer(db, domains=["mueller-soehne.example"])
    contact = service.add_contact(db, thirdparty_id=tp, name="Jürgen Weiß",
                                  addresses=["j.weiss@mueller-soehne.example"])
    meeting_id = meetings.add_meeting(
        db, OWN, subject="Rollout", start_at=START, end_at=START + timedelta(hours=1), location="Stuttgart",
        attendees=["Lena <Lena@Nordlicht.example>", "j.weiss@mueller-soehne.example", "boss@gmail.example",
                   "x@other.example", "J.Weiss@mueller-soehne.example"])
    data = meetings.describe_meeting(db, str(meeting_id))
    assert data["thirdparty_id"] == tp and data["thirdparty_name"] == "Müller & Söhne KG"
    assert data["attendees"] == [
        {"name": "Lena", "address": "lena@nordlicht.example", "contact_id": None, "thirdparty_id": None,
         "internal": True},
        {"name": "Jürgen Weiß", "address": "j.weiss@mueller-soehne.example", "contact_id": contact,
         "thirdparty_id": tp, "internal": False},
        {"name": "", "address": "boss@gmail.example", "contact_id": None, "thirdparty_id": None, "internal": True},
        {"name": "", "address": "x@other.example", "contact_id": None, "thirdparty_id": None, "internal": False},
    ]
    [created] = events(db, "meeting.created")
    assert created.thirdparty_id == tp
    assert created.data == {"meeting_id": meeting_id, "subject": "Rollout", "start_at": "2026-11-19T13:00:00+00:00",
                            "end_at": "2026-11-19T14:00:00+00:00"}
    with db.engine.connect() as conn:
        ctx = meetings.meeting_context(conn, meeting_id, "Europe/Berlin")
    assert ctx["date"] == date(2026, 11, 19) and ctx["start"].hour == 14
    assert ctx["attendees"][:2] == ["Lena", "Jürgen Weiß"]
    assert [a["address"] for a in ctx["external_attendees"]] == ["j.weiss@mueller-soehne.example",
                                                                 "x@other.example"]


def test_sequence_decides_and_cancel_is_once(db: Database) -> None:
    tp = customer(db)
    with db.engine.begin() as conn:
        first = meetings.upsert_meeting_in(conn, uid="u1", subject="A", start_at=START, end_at=START,
                                           thirdparty_id=tp, sequence=1)
        stale = meetings.upsert_meeting_in(conn, uid="u1", subject="old", start_at=START, end_at=START, sequence=0)
        again = meetings.upsert_meeting_in(conn, uid="u1", subject="A", start_at=START, end_at=START, sequence=1)
        newer = meetings.upsert_meeting_in(conn, uid="u1", subject="B", start_at=START + timedelta(days=1),
                                           end_at=START + timedelta(days=1, hours=1), sequence=2)
    assert [c.action for c in (first, stale, again, newer)] == ["created", "stale", "unchanged", "updated"]
    [row] = meetings.list_meetings(db)
    assert row["subject"] == "B" and row["sequence"] == 2 and row["thirdparty_id"] == tp
    assert len(events(db, "meeting.created")) == 1 and len(events(db, "meeting.updated")) == 1
    assert meetings.cancel_meeting(db, "u1") is True
    assert meetings.cancel_meeting(db, str(first.meeting_id)) is False
    assert [e.thirdparty_id for e in events(db, "meeting.cancelled")] == [tp]
    assert meetings.list_meetings(db, include_cancelled=False) == []
    with db.engine.begin() as conn:  # the request the cancel overtook does not bring it back
        late = meetings.upsert_meeting_in(conn, uid="u1", subject="B", start_at=START, end_at=START, sequence=2)
    assert late.action == "unchanged"


def test_bad_meeting_input(db: Database) -> None:
    with pytest.raises(ValueError, match="before it starts"):
        meetings.add_meeting(db, OWN, subject="x", start_at=START, end_at=START - timedelta(minutes=1))
    with pytest.raises(ValueError, match="must carry a timezone"):
        meetings.add_meeting(db, OWN, subject="x", start_at=datetime(2026, 1, 1), end_at=START)
    with pytest.raises(ValueError, match="not a valid mail address"):
        meetings.add_meeting(db, OWN, subject="x", start_at=START, end_at=START, attendees=["nobody"])
    with pytest.raises(LookupError, match="no meeting 'zz'"):
        meetings.describe_meeting(db, "zz")


def test_moment_reads_offsets_and_local_times() -> None:
    assert moment("2026-11-19T14:00+01:00", "start") == START
    assert moment("2026-11-19 14:00", "start", "Europe/Berlin") == START
    assert moment("2026-07-01T14:00", "start", "Europe/Berlin") == datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert moment(datetime(2026, 11, 19, 13, 0, tzinfo=UTC), "x") == START
    with pytest.raises(ValueError, match="not a time"):
        moment("tomorrow", "start")
