"""RFC 3463 enhanced status codes (and plain SMTP replies): hard or soft, and the usual reason in words."""

from __future__ import annotations

import re

ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
SMTP_REPLY = re.compile(r"\b([45])(\d\d)[ -]")

# subject.detail -> reason (RFC 3463 section 3 and the IANA registry); the most useful ones only.
_REASONS = {
    "1.0": "bad address", "1.1": "user unknown", "1.2": "host unknown", "1.3": "bad address syntax",
    "1.6": "mailbox moved", "1.10": "recipient address has null MX",
    "2.0": "mailbox unavailable", "2.1": "mailbox disabled", "2.2": "mailbox full", "2.3": "message too large",
    "2.4": "mailing list expansion problem",
    "3.0": "mail system problem", "3.1": "mail system full", "3.4": "message too large",
    "4.0": "network or routing problem", "4.1": "no answer from host", "4.2": "connection dropped",
    "4.4": "unable to route", "4.6": "routing loop", "4.7": "delivery time expired",
    "5.0": "protocol error",
    "7.0": "blocked (policy)", "7.1": "blocked (not authorised / spam)", "7.23": "blocked (SPF)",
    "7.25": "blocked (reverse DNS)", "7.26": "blocked (authentication failed)", "7.27": "blocked (null MX)",
}
# What diagnostic texts say when the code is vague (5.0.0, 550 alone): (pattern, reason, hard?)
_TEXT_REASONS: tuple[tuple[re.Pattern[str], str, bool], ...] = tuple(
    (re.compile(p, re.I), reason, hard) for p, reason, hard in (
        (r"user unknown|unknown user|no such user|does not exist|doesn't exist|not exist|unknown recipient|"
         r"recipient (address )?rejected|invalid recipient|no mailbox|mailbox not found|mailbox unavailable|"
         r"address rejected|unbekannt|existiert nicht|n'existe pas|inexistant|no existe|non esiste|bestaat niet|"
         r"recipient not found|wasn't found at|was not found at|not listed in|no such (address|mailbox)|"
         r"account (is )?disabled|account has been disabled|no longer active", "user unknown", True),
        (r"mailbox (is )?full|over ?quota|quota exceeded|insufficient (disk )?space|postfach (ist )?voll|"
         r"speicherplatz", "mailbox full", False),
        (r"host unknown|domain not found|name or service not known|no mx|unrouteable|unroutable|"
         r"domain (does not|doesn't) exist|nxdomain", "host unknown", True),
        (r"too large|too big|size limit|exceeds.*size|message size", "message too large", True),
        (r"spam|blocked|blacklist|blocklist|denied|policy|reputation|rejected for policy", "blocked/spam", True),
        (r"timed? ?out|delay|deferred|temporar|try again|greylist", "temporary failure", False),
    ))


def parse_code(text: str | None) -> str | None:
    """The first enhanced status code (5.1.1) in `text`, else a plain SMTP reply code as X.0.0 (550 -> 5.0.0)."""
    if not text:
        return None
    found = ENHANCED.search(text)
    if found:
        return ".".join(found.groups())
    reply = SMTP_REPLY.search(text + " ")
    return f"{reply.group(1)}.0.0" if reply else None


def is_hard(status: str | None, diagnostic: str | None = None, action: str | None = None) -> bool:
    """5.x.x is permanent, 4.x.x temporary; without a code the diagnostic text and the action decide."""
    if action and action.lower().startswith(("delayed", "relayed", "delivered", "expanded")):
        return False
    if status and status[:1] in "45":
        if status.startswith("5"):
            return not _soft_by_text(status, diagnostic)
        return False
    for pattern, _, hard in _TEXT_REASONS:
        if diagnostic and pattern.search(diagnostic):
            return hard
    return bool(action and action.lower().startswith("failed"))


def _soft_by_text(status: str, diagnostic: str | None) -> bool:
    """A 5.2.2 'mailbox full' is permanent by the code but usually clears: treated as soft (counted, not final)."""
    return status.startswith("5.2.2") or (status == "5.0.0" and bool(diagnostic) and
                                          bool(re.search(r"mailbox (is )?full|over ?quota", diagnostic or "", re.I)))


def reason(status: str | None, diagnostic: str | None = None) -> str:
    """The usual reason in words: by the diagnostic text when it says, else by the status code."""
    for pattern, text, _ in _TEXT_REASONS:
        if diagnostic and pattern.search(diagnostic):
            return text
    if status:
        _, _, rest = status.partition(".")
        if rest in _REASONS:
            return _REASONS[rest]
        subject = rest.partition(".")[0] + ".0"
        if subject in _REASONS:
            return _REASONS[subject]
    return "delivery failed"
