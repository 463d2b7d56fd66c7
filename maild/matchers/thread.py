"""Thread matcher: our tracking id in the thread headers or a plus-address, or a reply to filed mail."""

from __future__ import annotations

from maild.matchers.base import Candidate, MailFacts, Settings, Snapshot, Verdict
from maild.matchers.normalize import plus_tag
from maild.tracking import ids as tracking

NAME = "thread"


def thread_ids(facts: MailFacts) -> list[str]:
    """Referenced Message-IDs, the direct parent first."""
    ids = [facts.in_reply_to] if facts.in_reply_to else []
    return ids + [ref for ref in reversed(facts.references) if ref not in ids]


def tracking_tokens(facts: MailFacts, instance: str) -> list[str]:
    tags = [tag for tag in (plus_tag(a) for a in [*facts.to, *facts.cc]) if tag]
    return tracking.tokens_in([*thread_ids(facts), *tags], instance)


def match(facts: MailFacts, snapshot: Snapshot, settings: Settings) -> Verdict:
    for token in facts.tokens:
        owner = snapshot.tracking.get(token)
        if owner and owner[0] is not None:
            return Verdict(NAME, (Candidate(owner[0], owner[1], 0.99, f"our tracking id {token} in the thread"),))
    for ref in facts.thread_refs:
        filed = snapshot.filed_threads.get(ref)
        if filed:
            return Verdict(NAME, (Candidate(filed[0], filed[1], 0.95, f"reply in the thread of {ref}"),))
    return Verdict(NAME, note="no known thread or tracking id")


