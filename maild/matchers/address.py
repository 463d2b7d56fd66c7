"""Address matcher: From, Reply-To, then To/Cc of our own outbound copies, then a forward's original sender.

A contact's address resolves to its company; a company's general address (info@) to the company alone.
"""

from __future__ import annotations

import re
from email.utils import getaddresses

from maild.matchers.base import Candidate, MailFacts, Settings, Snapshot, Verdict
from maild.matchers.normalize import normalize_address

NAME = "address"
_FORWARD_SUBJECT = re.compile(r"^\s*(fwd?|wg|tr|rv|doorst|vs)\s*:", re.IGNORECASE)
_FORWARDED_FROM = re.compile(r"^[>\s*]*(?:from|von|de|da|van)\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)


def forwarded_senders(facts: MailFacts) -> list[str]:
    """Original senders named in a forwarded message's quoted header block."""
    if not _FORWARD_SUBJECT.match(facts.subject or ""):
        return []
    found = [addr for _, addr in getaddresses(_FORWARDED_FROM.findall(facts.body[:20000]))]
    return [a for a in found if "@" in a]


def roles(facts: MailFacts, settings: Settings) -> list[tuple[str, float, str]]:
    """(address, confidence, how it was found), strongest evidence first; our own addresses left out."""
    out: list[tuple[str, float, str]] = []
    if facts.from_addr and not settings.is_own(facts.from_addr):
        out.append((facts.from_addr, 0.9, "sender"))
        out += [(a, 0.85, "Reply-To") for a in facts.reply_to]
    else:  # our own outbound copy, or a colleague forwarding
        out += [(a, 0.75, "original sender of the forward") for a in forwarded_senders(facts)]
        out += [(a, 0.8, "recipient of our mail") for a in [*facts.to, *facts.cc]]
    result = []
    for address, confidence, how in out:
        normal = normalize_address(address)
        if normal and not settings.is_own(normal):
            result.append((normal, confidence, how))
    return result


def match(facts: MailFacts, snapshot: Snapshot, settings: Settings) -> Verdict:
    for address, confidence, how in facts.roles:
        owners = snapshot.addresses.get(address)
        if owners:
            candidates = tuple(
                Candidate(tp, contact, confidence if contact else confidence - 0.05,
                          f"{how} {address} is {'a contact' if contact else 'an address'} of "
                          f"{snapshot.thirdparty_names.get(tp, tp)}")
                for tp, contact in owners)
            return Verdict(NAME, candidates)
    return Verdict(NAME, note="no known address among sender, Reply-To or recipients")
