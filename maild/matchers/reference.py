"""Reference matcher: document numbers (invoice FA2611-0007, proposal PR2611-0042) in subject or body."""

from __future__ import annotations

import re
from functools import lru_cache

from maild.matchers.base import Candidate, MailFacts, Settings, Snapshot, Verdict

NAME = "reference"
BODY_CHARS = 20000


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def references(facts: MailFacts, settings: Settings) -> list[tuple[str, str, str]]:
    """(ref, expected kind, where) in subject first, then body.

    A match glued to a preceding letter or digit (`XFA2611-0001`) is not a reference. Checking that
    here, instead of a leading `\\b` in the pattern, keeps the literal prefix that lets `re` skip ahead
    to candidate positions instead of trying every one (the matching figures are in bench/match.py).
    """
    found = []
    for where, text in (("subject", facts.subject or ""), ("body", facts.body[:BODY_CHARS])):
        for pattern, kind in settings.reference_patterns:
            for match in _compiled(pattern).finditer(text):
                if match.start() > 0 and text[match.start() - 1].isalnum():
                    continue
                found.append((match.group(0), kind, where))
    return found


def match(facts: MailFacts, snapshot: Snapshot, settings: Settings) -> Verdict:
    for ref, kind, where in facts.doc_refs:
        owners = [tp for doc_kind, tp in snapshot.documents.get(ref, []) if doc_kind == kind]
        if owners:
            confidence = 0.8 if where == "subject" else 0.7
            return Verdict(NAME, tuple(
                Candidate(tp, None, confidence, f"{kind} {ref} in the {where} belongs to "
                                                f"{snapshot.thirdparty_names.get(tp, tp)}")
                for tp in sorted(set(owners))))
    return Verdict(NAME, note="no known document reference")
