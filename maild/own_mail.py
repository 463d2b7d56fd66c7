"""Which addresses are ours: `matching.own_domains`, `matching.own_addresses` and the outbound sender.

One answer for every place that asks: the matchers (our outbound copies), meetings (internal attendees) and
the rules (a reply is mail from the customer, not from us).
"""

from __future__ import annotations

from dataclasses import dataclass

from maild.config import Config
from maild.matchers.normalize import domain_of, normalize_address, normalize_domain


@dataclass(frozen=True)
class OwnMail:
    domains: frozenset[str] = frozenset()
    addresses: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: Config) -> OwnMail:
        matching = config.matching
        addresses = (normalize_address(a) for a in [*matching.own_addresses, config.outbound.sender])
        return cls(frozenset(d for d in (normalize_domain(x) for x in matching.own_domains) if d),
                   frozenset(a for a in addresses if a))

    def is_own(self, address: str | None) -> bool:
        normal = normalize_address(address)
        return normal is not None and (normal in self.addresses or domain_of(normal) in self.domains)
