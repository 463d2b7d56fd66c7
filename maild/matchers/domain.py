"""Domain matcher: the sender's domain against third parties' domains; never for free-mail providers."""

from __future__ import annotations

from maild.matchers.base import Candidate, MailFacts, Settings, Snapshot, Verdict
from maild.matchers.normalize import domain_of

NAME = "domain"


def match(facts: MailFacts, snapshot: Snapshot, settings: Settings) -> Verdict:
    skipped = []
    for address, _, how in facts.roles:
        domain = domain_of(address)
        if domain is None:
            continue
        if domain in settings.free_mail_domains:
            skipped.append(domain)
            continue
        owners = snapshot.domains.get(domain)
        if owners:
            return Verdict(NAME, tuple(
                Candidate(tp, None, 0.6, f"{how}'s domain {domain} belongs to {snapshot.thirdparty_names.get(tp, tp)}")
                for tp in owners))
    if skipped:
        return Verdict(NAME, note=f"{', '.join(sorted(set(skipped)))} is a free-mail provider: says nothing")
    return Verdict(NAME, note="no known domain")
