"""Detector: an RFC 3464 delivery-status report (multipart/report with a message/delivery-status part)."""

from __future__ import annotations

from maild.bounces import dsn
from maild.bounces import text as notice_text
from maild.classify.base import BOUNCE, MailView, Settings, Verdict

NAME = "dsn"


def detect(mail: MailView, settings: Settings) -> Verdict:
    parts = dsn.status_parts(mail.message)
    if not parts and mail.report_type != "delivery-status":
        return Verdict(NAME)
    recipients = []
    dropped = 0
    for part in parts:
        found, cut = dsn.recipients(part)
        recipients += found
        dropped += cut
    evidence = f"Content-Type: multipart/report; report-type={mail.report_type or '?'}"
    if not recipients:  # a malformed status part: the report's own words may still name the recipient
        own = frozenset(a.lower() for a in mail.envelope_to)
        recipients = notice_text.failed_recipients(mail.message, mail.text, own)
        evidence += "; no readable delivery-status fields, recipients from the text"
    if not recipients and not parts:
        return Verdict(NAME)
    failed = [r for r in recipients if r.action == "failed"]
    summary = ", ".join(f"{r.address} {r.action} {r.status or ''}".strip() for r in recipients[:5])
    more = f" and {len(recipients) - 5 + dropped} more" if len(recipients) + dropped > 5 else ""
    state = "failed" if failed else ("delayed" if recipients else "no recipient named")
    return Verdict(NAME, BOUNCE, f"{evidence}: {state}: {summary}{more}".rstrip(": "), tuple(recipients))
