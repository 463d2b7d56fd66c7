"""Normal forms used on both sides of every lookup: addresses, domains and names."""

from __future__ import annotations

import re
import unicodedata
from functools import cache, lru_cache

from publicsuffixlist import PublicSuffixList

_SPACES = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[^\w\s]")


@lru_cache(maxsize=65536)  # asked several times per message (roles, own mail, domains), mostly for the same few
def normalize_domain(domain: str) -> str | None:
    """Lower-case ASCII (IDN labels as punycode), no trailing dot; None if it cannot be a domain."""
    domain = domain.strip().rstrip(".").lower()
    if not domain or " " in domain:
        return None
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain if domain.isascii() else None


@lru_cache(maxsize=65536)
def normalize_address(address: str | None) -> str | None:
    """`Anna+Sales@Müller.example` -> `anna@xn--mller-kva.example`: case, plus tag and IDN folded."""
    if not address:
        return None
    address = address.strip().strip("<>").strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return None
    local = local.lower().split("+", 1)[0]
    normal_domain = normalize_domain(domain)
    if not local or normal_domain is None:
        return None
    return f"{local}@{normal_domain}"


def domain_of(address: str | None) -> str | None:
    normal = normalize_address(address)
    return normal.rpartition("@")[2] if normal else None


def domain_and_parents(domain: str) -> tuple[str, ...]:
    """A normalised domain and its parents, most specific first, down to the registrable domain.

    `mail.eu.customer.example` -> (`mail.eu.customer.example`, `eu.customer.example`, `customer.example`);
    never a public suffix (`co.uk`, `github.io`: the Public Suffix List), whose subdomains belong to others.
    """
    return (domain,) if domain.count(".") < 2 else _with_parents(domain)


def is_free_mail(domain: str, free_mail_domains: frozenset[str]) -> bool:
    """Whether `domain` is a free-mail provider's or one of its subdomains' (`eu.gmail.com` says nothing either)."""
    if domain in free_mail_domains:
        return True
    return domain.count(".") >= 2 and any(parent in free_mail_domains for parent in _with_parents(domain))


@lru_cache(maxsize=65536)
def _with_parents(domain: str) -> tuple[str, ...]:
    registrable = _public_suffixes().privatesuffix(domain)
    if registrable is None or registrable == domain or not domain.endswith("." + registrable):
        return (domain,)
    labels = domain.split(".")
    keep = registrable.count(".") + 1
    return tuple(".".join(labels[start:]) for start in range(len(labels) - keep + 1))


def plus_tag(address: str | None) -> str | None:
    """The part after `+` in the local part (`sales+abc@x` -> `abc`), as written."""
    if not address:
        return None
    local = address.strip().strip("<>").rpartition("@")[0]
    return local.split("+", 1)[1] if "+" in local else None


def name_key(name: str | None) -> str:
    """`  Müller-Bau GmbH ` -> `muller bau gmbh`: accents, case, punctuation and spacing folded."""
    if not name:
        return ""
    decomposed = unicodedata.normalize("NFKD", name)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACES.sub(" ", _NOT_WORD.sub(" ", stripped.casefold())).strip()[:300]


@cache
def _public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list shipped with the package: no network
