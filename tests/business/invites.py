"""Real calendar invitations, built like Outlook/Google/Thunderbird send them."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

VTIMEZONE = """BEGIN:VTIMEZONE
TZID:Europe/Berlin
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE"""


def ics(method: str = "REQUEST", uid: str = "040000008200E00074C5B7101A82E008@example.com", sequence: int = 0,
        summary: str = "Rollout der Version 4.2", start: str = "20261119T140000", end: str = "20261119T153000",
        organizer: str = "CN=Jürgen Weiß:mailto:j.weiss@mueller-soehne.example",
        attendees: tuple[str, ...] = ("CN=Lena Hoffmann;PARTSTAT=NEEDS-ACTION:mailto:lena@nordlicht.example",
                                      "CN=Jürgen Weiß;PARTSTAT=ACCEPTED:mailto:j.weiss@mueller-soehne.example",
                                      "CN=Unknown Person:mailto:guest@elsewhere.example"),
        status: str | None = None, location: str = "Stuttgart, Königstraße 12") -> str:
    lines = ["BEGIN:VCALENDAR", "PRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN", "VERSION:2.0",
             f"METHOD:{method}", VTIMEZONE, "BEGIN:VEVENT", f"UID:{uid}", f"SEQUENCE:{sequence}",
             "DTSTAMP:20261101T090000Z", f"SUMMARY:{summary}", f"LOCATION:{location.replace(',', chr(92) + ',')}",
             f"DTSTART;TZID=Europe/Berlin:{start}", f"DTEND;TZID=Europe/Berlin:{end}", f"ORGANIZER;{organizer}"]
    lines += [f"ATTENDEE;ROLE=REQ-PARTICIPANT;RSVP=TRUE;{a}" for a in attendees]
    if status:
        lines.append(f"STATUS:{status}")
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return "\r\n".join(lines) + "\r\n"


def invitation_mail(calendar: str, *, method: str = "REQUEST", sender: str = "j.weiss@mueller-soehne.example",
                    subject: str = "Einladung: Rollout", attach_file: bool = True,
                    date: str = "Mon, 16 Nov 2026 10:00:00 +0100") -> bytes:
    """multipart/mixed: alternative (text, html, text/calendar; method=...) plus invite.ics, as Google does. Sent
    (`date`) before the meetings of `ics()`: an invitation is no contact after the meeting."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["Date"] = date
    msg["To"] = "lena@nordlicht.example"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="mueller-soehne.example")
    msg.set_content("Sie wurden eingeladen.")
    msg.add_alternative("<p>Sie wurden eingeladen.</p>", subtype="html")
    msg.add_alternative(calendar.encode("utf-8"), maintype="text", subtype="calendar",
                        params={"method": method, "charset": "UTF-8"})
    if attach_file:
        msg.add_attachment(calendar.encode("utf-8"), maintype="application", subtype="ics", filename="invite.ics")
    return msg.as_bytes()
