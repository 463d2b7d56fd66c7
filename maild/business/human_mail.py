"""Is a stored message machine mail (a bounce, an out-of-office reply, a list or a no-reply sender)? Holds ask this:
machine mail never holds a dunning sequence.

The classification made at ingest (`messages.kind`, maild/classify) decides; messages stored before it existed
(kind empty) are judged by their sender's address and subject.
"""

from __future__ import annotations

import re
from typing import Any

_SENDERS = re.compile(r"^(mailer-daemon|postmaster|no-?reply|do-?not-?reply|noreply-[\w.-]+|bounces?(\+.*)?|"
                      r"auto-?reply|autoresponder)@", re.IGNORECASE)
_SUBJECTS = re.compile(
    r"^\s*(auto(matic)? ?reply|automatische antwort|abwesenheit|out of (the )?office|réponse automatique|"
    r"undeliver(ed|able)|delivery status notification|mail delivery (failed|failure|system)|"
    r"returned mail|nicht zustellbar|unzustellbar)", re.IGNORECASE)


_BOUNCE_SENDERS = re.compile(r"^(mailer-daemon|postmaster)@", re.IGNORECASE)
_BOUNCE_SUBJECTS = re.compile(r"^\s*(undeliver(ed|able)|delivery status notification \(failure\)|"
                              r"mail delivery (failed|failure|system)|returned mail|nicht zustellbar|unzustellbar)",
                              re.IGNORECASE)


def is_bounce(message: Any) -> bool:
    """A delivery failure report: classified so, or (unclassified) from the mailer daemon or with such a subject."""
    kind = getattr(message, "kind", None)
    if kind is not None:
        return bool(kind == "bounce")
    return bool(_BOUNCE_SENDERS.match((message.from_addr or "").strip())
                or _BOUNCE_SUBJECTS.match((message.subject or "").strip()))


def machine_reason(message: Any) -> str | None:
    """Why this message is machine mail, or None when it looks written by a person."""
    kind = getattr(message, "kind", None)
    if kind is not None:
        return None if kind == "human" else f"classified as {kind}"
    sender = (message.from_addr or "").strip()
    if _SENDERS.match(sender):
        return f"sent by {sender}"
    subject = (message.subject or "").strip()
    if _SUBJECTS.match(subject):
        return f"subject {subject[:60]!r}"
    return None
