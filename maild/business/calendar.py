"""iCalendar (RFC 5545 / iTIP) invitations -> plain records, with the `icalendar` library. Pure: no database.

Only VEVENTs are read. A date-only (all-day) event runs from 00:00 of its first day to 00:00 after its last,
in `zone`; floating times (no TZID, no Z) are read in `zone` too. A recurring event is kept as its first
occurrence; an exception of one (RECURRENCE-ID) gets its own uid `UID#RECURRENCE-ID`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from icalendar import Calendar

METHODS = ("REQUEST", "PUBLISH", "CANCEL")
MAX_ICS_BYTES = 2_000_000


class CalendarError(ValueError):
    """An .ics that cannot be read."""


@dataclass(frozen=True)
class Invitation:
    method: str  # REQUEST | PUBLISH | CANCEL (an event with STATUS:CANCELLED reads as CANCEL)
    uid: str
    sequence: int
    summary: str
    location: str
    start_at: datetime  # UTC
    end_at: datetime  # UTC
    organizer: tuple[str, str] | None  # (name, address)
    attendees: list[tuple[str, str]] = field(default_factory=list)  # (name, address)
    recurring: bool = False


def read_invitations(data: bytes, zone: str = "UTC", method_hint: str | None = None) -> list[Invitation]:
    """The events of one calendar object whose METHOD is REQUEST, PUBLISH or CANCEL (the Content-Type's
    `method=` parameter stands in when the object names none). Other methods (REPLY, COUNTER...): []."""
    if len(data) > MAX_ICS_BYTES:
        raise CalendarError(f"calendar object of {len(data)} bytes is over {MAX_ICS_BYTES}")
    try:
        calendars = Calendar.from_ical(data, multiple=True)
    except Exception as exc:  # the library raises ValueError, KeyError, IndexError... for broken input
        raise CalendarError(f"unreadable iCalendar data: {type(exc).__name__}: {exc}") from None
    local = ZoneInfo(zone)
    out: list[Invitation] = []
    for cal in calendars:
        method = str(cal.get("METHOD") or method_hint or "").strip().upper()
        if method not in METHODS:
            continue
        for event in cal.walk("VEVENT"):
            try:
                out.append(_invitation(event, method, local))
            except CalendarError:
                raise
            except Exception as exc:
                raise CalendarError(f"unreadable event: {type(exc).__name__}: {exc}") from None
    return out


def _invitation(event: Any, method: str, local: ZoneInfo) -> Invitation:
    uid = str(event.get("UID") or "").strip()
    if not uid:
        raise CalendarError("an event without UID")
    recurrence = event.get("RECURRENCE-ID")
    if recurrence is not None:
        uid = f"{uid}#{_moment(event.decoded('RECURRENCE-ID'), local).isoformat()}"
    if "DTSTART" not in event:
        raise CalendarError(f"event {uid} has no DTSTART")
    raw_start = event.decoded("DTSTART")
    start = _moment(raw_start, local)
    if "DTEND" in event:
        end = _moment(event.decoded("DTEND"), local)
    elif "DURATION" in event:
        end = start + event.decoded("DURATION")
    else:  # RFC 5545 3.6.1: a date lasts one day; a date-time without end is an instant
        end = start + (timedelta(days=1) if not isinstance(raw_start, datetime) else timedelta(0))
    if end < start:
        raise CalendarError(f"event {uid} ends before it starts")
    status = str(event.get("STATUS") or "").strip().upper()
    try:
        sequence = int(str(event.get("SEQUENCE") or 0))
    except ValueError:
        sequence = 0
    return Invitation(
        method="CANCEL" if status == "CANCELLED" else method, uid=uid[:500], sequence=max(sequence, 0),
        summary=str(event.get("SUMMARY") or "").strip(), location=str(event.get("LOCATION") or "").strip(),
        start_at=start, end_at=end, organizer=_person(event.get("ORGANIZER")),
        attendees=[p for p in (_person(a) for a in _as_list(event.get("ATTENDEE"))) if p is not None],
        recurring="RRULE" in event or "RDATE" in event)


def _moment(value: Any, local: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        return (value if value.tzinfo is not None else value.replace(tzinfo=local)).astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(0, 0), tzinfo=local).astimezone(UTC)
    raise CalendarError(f"not a date or time: {value!r}")


def _person(value: Any) -> tuple[str, str] | None:
    if value is None:
        return None
    text = str(value).strip()
    address = text[7:] if text.lower().startswith("mailto:") else text
    if "@" not in address:
        return None
    params = getattr(value, "params", {}) or {}
    name = str(params.get("CN") or "").strip().strip('"')
    return (name if name and name.lower() != address.lower() else ""), address.strip()


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
