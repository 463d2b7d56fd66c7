"""Non-standard delivery-failure notices: the failed recipients named in the notice's own words.

Two sources, merged: flufl.bounce (Mailman's detectors for Exim, Postfix, qmail, Yahoo, GroupWise, SMTP32,
Netscape and many older servers) and maild's patterns for what it misses (Exchange / Microsoft 365, Gmail,
Lotus Domino, T-Online, GMX/web.de, Courier, and the generic "could not be delivered to" sentences of several
languages). For each address the few lines after it are read for an SMTP status and the server's words.
"""

from __future__ import annotations

import logging
import re
from email.message import Message

from maild.bounces import status as codes
from maild.bounces.model import MAX_RECIPIENTS, FailedRecipient

log = logging.getLogger("maild.bounces")
MAX_TEXT = 20_000  # characters of the notice's explanation that are read (explanations are short)
ADDRESS = (r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
           r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+")
_ADDRESS = re.compile(ADDRESS)
# Where the returned original begins: addresses below are the original's, not failed recipients.
_ORIGINAL = re.compile(
    r"^\s*(?:-+\s*)?(?:Below this line is a copy of the message|This is a copy of the message|"
    r"-+ ?(?:Original|Returned|Forwarded) message|Original message follows|Returned mail follows|"
    r"The original message (?:was|is|headers)|Original message headers|The header of the original message|"
    r"-+ ?The following addresses had|Unsent message below|Urspr(?:ü|ue)ngliche Nachricht|"
    r"Message d'origine|Mensaje original|Messaggio originale|Oorspronkelijk bericht|Reporting-MTA:)",
    re.I | re.M)
# "<address>: ..." (Postfix, Courier, qmail), an address alone on its line (Exim, Gmail, Exchange, Domino), or
# after the sentences that name a failed recipient.
_LINE_PATTERNS = tuple(re.compile(p, re.I | re.M) for p in (
    rf"^\s*<({ADDRESS})>\s*(?::|\.\.\.|$)",
    rf"^\s*[\"']?({ADDRESS})[\"']?\s*(?:\(|<|$|:|\s+on\s|\s+-)",
    rf"^\s*(?:RCPT TO:?\s*)?<({ADDRESS})>",
    rf"(?:could not be delivered to|couldn't be delivered to|wasn't delivered to|was not delivered to|"
    rf"delivery to the following recipients? failed[^\n]*?|delivery to|delivery has failed to[^\n]*?|"
    rf"failed to deliver to|not be delivered to|message to|undeliverable to|unable to deliver (?:your )?"
    rf"message to|konnte nicht zugestellt werden an|nicht zugestellt werden an|zustellung an|"
    rf"n'a pas pu être remis à|non remis à|no se pudo entregar a|non è stato possibile consegnare a|"
    rf"kon niet worden bezorgd bij|failed addresses follow:?[^\n]*\n\s*|\buser(?=\s))\s*<?({ADDRESS})>?",
))
_ROBOT = re.compile(r"^(?:mailer-daemon|postmaster|mail-daemon|maildaemon|no-?reply|bounces?|root|abuse)"
                    r"(?:[+@]|$)", re.I)


def failed_recipients(message: Message, explanation: str, own: frozenset[str] = frozenset(),
                      own_patterns: bool = True) -> list[FailedRecipient]:
    """The failed recipients a notice names (maild's patterns first, flufl.bounce for the rest). `explanation` is
    the notice's human-readable text; `own` are addresses that are never failed recipients (the notice's To)."""
    found: dict[str, FailedRecipient] = {}
    text = _explanation(explanation)
    for address, diagnostic in _by_patterns(text) if own_patterns else []:
        if address not in own and not _ROBOT.match(address) and address not in found:
            found[address] = _recipient(address, diagnostic, text)
    for address, temporary in _by_flufl(message):
        if address not in own and address not in found:
            diagnostic = _diagnostic_near(text, address)
            found[address] = _recipient(address, diagnostic, text, temporary=temporary)
    return list(found.values())[:MAX_RECIPIENTS]


def _explanation(text: str) -> str:
    text = text[:MAX_TEXT]
    cut = _ORIGINAL.search(text)
    return text[:cut.start()] if cut and cut.start() > 0 else text


def _by_patterns(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    lines = _lines_with_addresses(text)
    for pattern in _LINE_PATTERNS:
        for match in pattern.finditer(lines):
            address = match.group(1).lower().rstrip(".")
            if address in seen:
                continue
            seen.add(address)
            found.append((address, _diagnostic_near(text, address)))
    return found


def _lines_with_addresses(text: str) -> str:
    """The lines with an `@`, each with the line before it (where the sentence naming it may end): the patterns
    then read a few lines instead of the whole notice."""
    lines = text.splitlines()
    keep: list[str] = []
    for index, line in enumerate(lines):
        if "@" in line:
            if index and "@" not in lines[index - 1]:
                keep.append(lines[index - 1])
            keep.append(line)
    return "\n".join(keep)


def _by_flufl(message: Message) -> list[tuple[str, bool]]:
    try:
        from flufl.bounce import all_failures

        temporary, permanent = all_failures(message)
    except Exception as exc:  # a detector's bug on odd input is the notice's problem, not ingest's
        log.debug("flufl.bounce failed: %s", exc)
        return []
    out = [(_text(a).lower(), False) for a in sorted(permanent)]
    out += [(_text(a).lower(), True) for a in sorted(temporary) if a not in permanent]
    return [(a, t) for a, t in out if _ADDRESS.fullmatch(a)]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _diagnostic_near(text: str, address: str, start: int | None = None) -> str:
    """The line with an SMTP status within a few lines of the address (or the whole notice's first such line)."""
    if start is None:
        position = text.lower().find(address)
        start = position + len(address) if position >= 0 else 0
    window = text[max(0, start - 200):start + 600]
    for line in window.splitlines():
        if codes.ENHANCED.search(line) or codes.SMTP_REPLY.search(line.strip() + " "):
            return " ".join(line.split())[:1000]
    for line in text.splitlines():
        if codes.ENHANCED.search(line):
            return " ".join(line.split())[:1000]
    return ""


def _recipient(address: str, diagnostic: str, text: str, temporary: bool | None = None) -> FailedRecipient:
    status = codes.parse_code(diagnostic)
    delayed = temporary if temporary is not None else bool(
        (status and status.startswith("4")) or re.search(
            r"\b(?:delayed|has not yet been delivered|will (?:continue|keep) trying|still trying|"
            r"verzögert|retard|retrasad|ritardat|vertraagd)\b", text[:3000], re.I))
    action = "delayed" if delayed else "failed"
    hard = not delayed and codes.is_hard(status, diagnostic or text[:2000], action)
    return FailedRecipient(address=address, action=action, status=status, diagnostic=diagnostic, hard=hard,
                           reason=codes.reason(status, diagnostic or text[:2000]))
