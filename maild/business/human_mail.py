"""Is a stored message machine mail (a bounce, an out-of-office reply, a list or a no-reply sender)? Holds ask this:
machine mail never holds a dunning sequence.

Until the classification of each message at ingest (issue 12) is on main, this reads what the message row has:
the sender's address and the subject. Replace `machine_reason` with a look at that classification when it lands.
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
    """A delivery failure report (from the mailer daemon, or with such a subject)."""
    return bool(_BOUNCE_SENDERS.match((message.from_addr or "").strip())
                or _BOUNCE_SUBJECTS.match((message.subject or "").strip()))


def machine_reason(message: Any) -> str | None:
    """Why this message is machine mail, or None when it looks written by a person."""
    sender = (message.from_addr or "").strip()
    if _SENDERS.match(sender):
        return f"sent by {sender}"
    subject = (message.subject or "").strip()
    if _SUBJECTS.match(subject):
        return f"subject {subject[:60]!r}"
    return None
