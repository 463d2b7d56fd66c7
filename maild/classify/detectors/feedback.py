"""Detector: an ARF complaint report (RFC 5965: multipart/report; report-type=feedback-report)."""

from __future__ import annotations

from email.message import Message
from email.utils import getaddresses

from maild.bounces.model import FailedRecipient
from maild.classify.base import FEEDBACK, MailView, Settings, Verdict

NAME = "feedback"


def detect(mail: MailView, settings: Settings) -> Verdict:
    if mail.report_type != "feedback-report":
        return Verdict(NAME)
    fields: dict[str, str] = {}
    complained: list[str] = []
    for part in mail.message.walk():
        ctype = part.get_content_type()
        if ctype == "message/feedback-report":
            fields = _fields(part)
        elif ctype in ("message/rfc822", "text/rfc822-headers") and not complained:
            complained = _recipients_of_original(part)
    original = fields.get("original-rcpt-to")
    if original:
        complained = [original.strip("<> ").lower(), *[a for a in complained if a != original.strip("<> ").lower()]]
    feedback_type = fields.get("feedback-type", "abuse")
    recipients = tuple(FailedRecipient(address=a, action="complaint", status=None, diagnostic=f"feedback-type: "
                                       f"{feedback_type}", hard=True, reason="complaint") for a in complained[:1])
    who = complained[0] if complained else "recipient not named"
    return Verdict(NAME, FEEDBACK, f"report-type=feedback-report, Feedback-Type: {feedback_type}: {who}", recipients)


def _fields(part: Message) -> dict[str, str]:
    payload = part.get_payload()
    blocks = payload if isinstance(payload, list) else []
    out: dict[str, str] = {}
    for block in blocks:
        if isinstance(block, Message):
            for key, value in block.items():
                out.setdefault(str(key).lower(), " ".join(str(value).split()))
    if not out and isinstance(payload, str):
        for line in payload.splitlines():
            key, colon, value = line.partition(":")
            if colon:
                out.setdefault(key.strip().lower(), value.strip())
    return out


def _recipients_of_original(part: Message) -> list[str]:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        headers = payload[0]
        return [a.lower() for _, a in getaddresses(headers.get_all("To", [])) if a]
    text = payload if isinstance(payload, str) else ""
    for line in text.splitlines():
        if line.lower().startswith("to:"):
            return [a.lower() for _, a in getaddresses([line[3:]]) if a]
    return []
