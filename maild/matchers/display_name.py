"""Display-name matcher: the sender's name equals a contact's or company's name (weak evidence)."""

from __future__ import annotations

from maild.matchers.base import Candidate, MailFacts, Settings, Snapshot, Verdict
from maild.matchers.normalize import name_key

NAME = "display_name"


def match(facts: MailFacts, snapshot: Snapshot, settings: Settings) -> Verdict:
    key = name_key(facts.from_name)
    if not key or settings.is_own(facts.from_addr):
        return Verdict(NAME, note="no sender name to compare")
    owners = snapshot.names.get(key, [])
    return Verdict(NAME, tuple(
        Candidate(tp, contact, 0.3, f"sender name {facts.from_name!r} equals a name at "
                                    f"{snapshot.thirdparty_names.get(tp, tp)}")
        for tp, contact in owners), note="" if owners else "no contact with that name")
