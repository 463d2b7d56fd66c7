"""Domain matcher: the sender's domain (or the nearest registered parent of it) against third parties' domains.

`mail.customer.example` matches the third party of `customer.example` when no one registered the subdomain
itself: the most specific registered domain wins, never above the registrable domain (`co.uk` is no one's).
Never for free-mail providers, nor their subdomains.
"""

from __future__ import annotations

from maild.matchers.base import Candidate, MailFacts, Settings, Snapshot, Verdict
from maild.matchers.normalize import domain_and_parents, domain_of, is_free_mail

NAME = "domain"


def match(facts: MailFacts, snapshot: Snapshot, settings: Settings) -> Verdict:
    skipped = []
    for address, _, how in facts.roles:
        domain = domain_of(address)
        if domain is None:
            continue
        if is_free_mail(domain, settings.free_mail_domains):
            skipped.append(domain)
            continue
        for registered in domain_and_parents(domain):
            owners = snapshot.domains.get(registered)
            if owners:
                where = domain if registered == domain else f"{domain} (under {registered})"
                return Verdict(NAME, tuple(_candidate(tp, f"{how}'s domain {where}", snapshot) for tp in owners))
    if skipped:
        return Verdict(NAME, note=f"{', '.join(sorted(set(skipped)))} is a free-mail provider: says nothing")
    return Verdict(NAME, note="no known domain")


def _candidate(thirdparty_id: int, found: str, snapshot: Snapshot) -> Candidate:
    return Candidate(thirdparty_id, None, 0.6,
                     f"{found} belongs to {snapshot.thirdparty_names.get(thirdparty_id, thirdparty_id)}")
