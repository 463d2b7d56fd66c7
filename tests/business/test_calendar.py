from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pytest

from maild.business.calendar import CalendarError, read_invitations
from tests.business.invites import ics
from tests.helpers import CORPUS


def test_outlook_request_with_timezone() -> None:
    [inv] = read_invitations(ics().encode())
    assert inv.method == "REQUEST" and inv.sequence == 0 and inv.summary == "Rollout der Version 4.2"
    assert inv.start_at == datetime(2026, 11, 19, 13, 0, tzinfo=UTC)
    assert inv.end_at == datetime(2026, 11, 19, 14, 30, tzinfo=UTC)
    assert inv.location == "Stuttgart, Königstraße 12"
    assert inv.organizer == ("Jürgen Weiß", "j.weiss@mueller-soehne.example")
    assert [a[1] for a in inv.attendees] == ["lena@nordlicht.example", "j.weiss@mueller-soehne.example",
                                             "guest@elsewhere.example"]


def test_cancel_all_day_floating_and_other_methods() -> None:
    [cancel] = read_invitations(ics(method="CANCEL", sequence=1).encode())
    assert cancel.method == "CANCEL" and cancel.sequence == 1
    [by_status] = read_invitations(ics(method="PUBLISH", status="CANCELLED").encode())
    assert by_status.method == "CANCEL"
    assert read_invitations(ics(method="REPLY").encode()) == []
    all_day = ics().replace("DTSTART;TZID=Europe/Berlin:20261119T140000", "DTSTART;VALUE=DATE:20261119") \
        .replace("DTEND;TZID=Europe/Berlin:20261119T153000", "DTEND;VALUE=DATE:20261120")
    [day] = read_invitations(all_day.encode(), zone="Europe/Berlin")
    assert day.start_at == datetime(2026, 11, 18, 23, 0, tzinfo=UTC) and day.end_at == datetime(2026, 11, 19, 23,
                                                                                                0, tzinfo=UTC)
    floating = ics().replace("DTSTART;TZID=Europe/Berlin:", "DTSTART:").replace("DTEND;TZID=Europe/Berlin:", "DTEND:")
    [local] = read_invitations(floating.encode(), zone="America/New_York")
    assert local.start_at == datetime(2026, 11, 19, 19, 0, tzinfo=UTC)


@pytest.mark.parametrize("data", [b"garbage", b"BEGIN:VCALENDAR\r\nFOO\r\n",
                                  ics().replace("DTSTART;TZID=Europe/Berlin:20261119T140000",
                                                "DTSTART:notatime").encode(),
                                  ics().replace("UID:040000008200E00074C5B7101A82E008@example.com\r\n", "").encode()])
def test_broken_calendars_raise_calendar_error(data: bytes) -> None:
    with pytest.raises(CalendarError):
        read_invitations(data)


def test_the_corpus_google_invitation() -> None:
    path = CORPUS / "postal-mime" / "calendar-event.eml"
    if not path.is_file():
        pytest.skip("no shared corpus here")
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    [part] = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
    [inv] = read_invitations(part.get_payload(decode=True))
    assert inv.uid == "1utaf3eftt1agbnisfcc3a5ps0@google.com" and inv.method == "REQUEST"
    assert inv.start_at == datetime(2024, 4, 11, 8, 0, tzinfo=UTC)  # 11:00 Europe/Tallinn (EEST)
    assert inv.organizer == ("Andris Reinman", "andris@postalsys.com")
