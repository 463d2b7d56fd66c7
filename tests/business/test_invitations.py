"""Meetings from invitations in ingested mail: through a real Maildir, ingestion and the matching stage."""

from __future__ import annotations

import mailbox
from pathlib import Path

from sqlalchemy import func, select

from maild.business.meetings import list_meetings
from maild.daemon import Daemon
from maild.directory import service
from maild.matchers.stage import MatchingStage
from maild.matchers.triage import assign
from maild.store.db import Database
from maild.store.models import Message, MessageMatch
from tests.business.helpers import events
from tests.business.invites import ics, invitation_mail
from tests.helpers import config_at, make_message, write_config


def _setup(tmp_path: Path, db_url: str, extra: str = "") -> tuple[mailbox.Maildir, Daemon, Database, int]:
    box = mailbox.Maildir(str(tmp_path / "mail"), create=True)
    config_path = write_config(tmp_path / "home", db_url, [{"name": "local", "type": "maildir",
                                                            "path": str(tmp_path / "mail")}])
    config_path.write_text(config_path.read_text() + "matching:\n  own_domains: [nordlicht.example]\n"
                           "rules:\n  timezone: Europe/Berlin\n" + extra)
    config = config_at(config_path)
    db = Database(config.database_url)
    db.upgrade()
    tp = service.add_thirdparty(db, name="Müller & Söhne", domains=["mueller-soehne.example"])
    service.add_contact(db, thirdparty_id=tp, name="Jürgen Weiß", addresses=["j.weiss@mueller-soehne.example"])
    return box, Daemon(config, db), db, tp


def _ingest(daemon: Daemon, box: mailbox.Maildir, *messages: bytes) -> None:
    for raw in messages:
        box.add(raw)
    report = daemon.ingest_once()
    assert not report.errors, report.errors


def test_request_update_and_cancel_from_mail(tmp_path: Path, db_url: str) -> None:
    box, daemon, db, tp = _setup(tmp_path, db_url)
    _ingest(daemon, box, invitation_mail(ics()))
    [meeting] = list_meetings(db)
    assert meeting["thirdparty_id"] == tp and meeting["subject"] == "Rollout der Version 4.2"
    assert meeting["start_at"].isoformat() == "2026-11-19T13:00:00+00:00"
    assert meeting["organizer"] == "j.weiss@mueller-soehne.example" and meeting["message_id"] is not None
    by_address = {a["address"]: a for a in meeting["attendees"]}
    assert by_address["lena@nordlicht.example"]["internal"] is True
    assert by_address["j.weiss@mueller-soehne.example"]["thirdparty_id"] == tp
    assert by_address["guest@elsewhere.example"] == {"name": "Unknown Person", "address": "guest@elsewhere.example",
                                                     "contact_id": None, "thirdparty_id": None, "internal": False}
    [created] = events(db, "meeting.created")
    assert created.thirdparty_id == tp and created.message_id == meeting["message_id"]

    moved = ics(sequence=1, start="20261120T090000", end="20261120T100000")
    _ingest(daemon, box, invitation_mail(moved, subject="Aktualisiert: Rollout"),
            invitation_mail(ics(sequence=0, summary="stale copy"), subject="old copy"))
    [meeting] = list_meetings(db)
    assert meeting["sequence"] == 1 and meeting["subject"] == "Rollout der Version 4.2"
    assert meeting["start_at"].isoformat() == "2026-11-20T08:00:00+00:00"
    assert len(events(db, "meeting.updated")) == 1 and len(events(db, "meeting.created")) == 1

    _ingest(daemon, box, invitation_mail(ics(method="CANCEL", sequence=2), method="CANCEL", subject="Abgesagt"))
    [meeting] = list_meetings(db)
    assert meeting["status"] == "cancelled"
    assert len(events(db, "meeting.cancelled")) == 1


def test_broken_calendar_never_stops_ingestion(tmp_path: Path, db_url: str) -> None:
    box, daemon, db, _tp = _setup(tmp_path, db_url)
    broken = ics().replace("DTSTART;TZID=Europe/Berlin:20261119T140000", "DTSTART:yesterday")
    _ingest(daemon, box, invitation_mail(broken), invitation_mail("not a calendar at all"),
            make_message(subject="plain", sender="j.weiss@mueller-soehne.example"),
            invitation_mail(ics(uid="good@example.com")))
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Message.__table__)).scalar() == 4
        decided = conn.execute(select(MessageMatch.__table__.c.status)).scalars().all()
    assert decided == ["matched"] * 4  # every message decided: the batch went through
    assert [m["uid"] for m in list_meetings(db)] == ["good@example.com"]


def test_an_invitation_from_an_unknown_sender_is_refused_until_a_person_assigns_its_mail(tmp_path: Path,
                                                                                         db_url: str) -> None:
    box, daemon, db, tp = _setup(tmp_path, db_url)
    other = service.add_thirdparty(db, name="Someone Else")
    stranger = "CN=Petra Neu:mailto:petra@freemail.example"
    invite = ics(uid="stranger@example.com", organizer=stranger, attendees=(stranger,))
    _ingest(daemon, box, invitation_mail(invite, sender="petra@freemail.example"),
            invitation_mail(ics(uid="known@example.com"), sender="petra@freemail.example"))
    assert list_meetings(db) == [], "nobody knows the sender: no meeting"
    refused = events(db, "meeting.refused")
    by_uid = {r.data["refused"][0]["uid"]: r for r in refused}
    assert sorted(by_uid) == ["known@example.com", "stranger@example.com"]
    assert all("petra@freemail.example is neither one of us nor a known contact" in r.data["reason"]
               for r in refused)
    stage = MatchingStage(daemon.config, db)
    assign(db, stage, by_uid["stranger@example.com"].message_id, other, learn=False)
    [meeting] = list_meetings(db)
    assert meeting["uid"] == "stranger@example.com" and meeting["thirdparty_id"] == other
    assign(db, stage, by_uid["known@example.com"].message_id, tp, learn=False)
    meetings = {m["uid"]: m for m in list_meetings(db)}
    assert meetings["known@example.com"]["thirdparty_id"] == tp
    assert len(events(db, "meeting.refused")) == 2, "assigning reports nothing again"


def test_a_meeting_changes_only_by_mail_from_its_organiser(tmp_path: Path, db_url: str) -> None:
    box, daemon, db, tp = _setup(tmp_path, db_url)
    colleague = service.add_contact(db, thirdparty_id=tp, name="Anna Berg", addresses=["a.berg@mueller-soehne.example"])
    assert colleague
    _ingest(daemon, box, invitation_mail(ics()))
    # Known people, but not the organiser: a colleague of the customer, one of us, and a stranger.
    _ingest(daemon, box,
            invitation_mail(ics(sequence=1, summary="Anna's version"), sender="a.berg@mueller-soehne.example"),
            invitation_mail(ics(sequence=2, summary="Lena's version"), sender="lena@nordlicht.example"),
            invitation_mail(ics(method="CANCEL", sequence=3), method="CANCEL", sender="x@elsewhere.example"))
    [meeting] = list_meetings(db)
    assert (meeting["subject"], meeting["sequence"], meeting["status"]) == ("Rollout der Version 4.2", 0, "confirmed")
    reasons = {r.data["sender"]: r.data["reason"] for r in events(db, "meeting.refused")}
    assert reasons["a.berg@mueller-soehne.example"] == (
        "only its organiser j.weiss@mueller-soehne.example may change or cancel meeting "
        "040000008200E00074C5B7101A82E008@example.com, not a.berg@mueller-soehne.example")
    assert "not lena@nordlicht.example" in reasons["lena@nordlicht.example"]
    assert "x@elsewhere.example is neither" in reasons["x@elsewhere.example"]
    assert events(db, "meeting.updated") == [] and events(db, "meeting.cancelled") == []
    _ingest(daemon, box, invitation_mail(ics(sequence=4, summary="Moved by the organiser")))
    [meeting] = list_meetings(db)
    assert meeting["subject"] == "Moved by the organiser", "the organiser still can"


def test_limits_on_meetings_per_message_and_attendees(tmp_path: Path, db_url: str) -> None:
    box, daemon, db, tp = _setup(tmp_path, db_url, "invitations: {max_meetings_per_message: 3, max_attendees: 5}\n")
    crowd = tuple(f"CN=Guest {n}:mailto:guest{n}@elsewhere.example" for n in range(40))
    events_ics = [ics(uid=f"many-{n}@example.com", attendees=crowd) for n in range(12)]
    calendar = events_ics[0].replace("END:VCALENDAR\r\n", "") + "".join(
        e[e.index("BEGIN:VEVENT"):e.index("END:VCALENDAR")] for e in events_ics[1:]) + "END:VCALENDAR\r\n"
    _ingest(daemon, box, invitation_mail(calendar))
    meetings = list_meetings(db)
    assert [m["uid"] for m in meetings] == ["many-0@example.com", "many-1@example.com", "many-2@example.com"]
    assert all(len(m["attendees"]) == 5 for m in meetings)
    assert meetings[0]["attendees"][0]["address"] == "j.weiss@mueller-soehne.example", "the organiser first"
    created = events(db, "meeting.created")
    assert {(e.data["attendees_omitted"], e.data["attendees_limit"]) for e in created} == {(36, 5)}
    [refused] = events(db, "meeting.refused")
    assert refused.data["count"] == 9 and refused.thirdparty_id == tp
    assert "over the limit of 3 meetings per message" in refused.data["reason"]
