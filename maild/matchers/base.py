"""The types every matcher shares: what it reads (MailFacts, Snapshot) and what it says (Verdict)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from maild.own_mail import OwnMail


@dataclass(frozen=True)
class MailFacts:
    """What matchers may look at, taken from a stored message."""

    message_id: int
    header_message_id: str | None
    in_reply_to: str | None
    references: list[str]
    from_addr: str | None
    from_name: str | None
    reply_to: list[str]
    to: list[str]
    cc: list[str]
    subject: str
    body: str  # the first part of the text body: enough for references and forwarded headers
    # Derived once per message by `derive()`, read by several matchers and by the snapshot loader:
    roles: tuple[tuple[str, float, str], ...] = ()  # (normalised address, confidence, how it was found)
    thread_refs: tuple[str, ...] = ()  # referenced Message-IDs, direct parent first
    tokens: tuple[str, ...] = ()  # our instance's tracking tokens in the thread or plus-addresses
    doc_refs: tuple[tuple[str, str, str], ...] = ()  # (document ref, kind, subject|body)


@dataclass(frozen=True)
class Candidate:
    thirdparty_id: int
    contact_id: int | None
    confidence: float
    reason: str


@dataclass(frozen=True)
class Verdict:
    matcher: str
    candidates: tuple[Candidate, ...] = ()
    note: str = ""  # why there is no candidate, when there is none


@dataclass(frozen=True)
class Settings:
    instance_id: str
    own: OwnMail
    free_mail_domains: frozenset[str]
    reference_patterns: tuple[tuple[str, str], ...]  # (regex, document kind)
    min_confidence: float

    def is_own(self, address: str | None) -> bool:
        return self.own.is_own(address)


@dataclass
class Snapshot:
    """The slice of the directory a batch of messages can possibly need, loaded with one query per table."""

    filed_threads: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # Message-ID -> (tp, contact)
    tracking: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)  # token -> (tp, contact)
    addresses: dict[str, list[tuple[int, int | None]]] = field(default_factory=dict)  # address -> [(tp, contact)]
    domains: dict[str, list[int]] = field(default_factory=dict)  # domain -> [tp]
    documents: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # ref -> [(kind, tp)]
    names: dict[str, list[tuple[int, int | None]]] = field(default_factory=dict)  # name key -> [(tp, contact)]
    thirdparty_names: dict[int, str] = field(default_factory=dict)


class Matcher(Protocol):
    def __call__(self, facts: MailFacts, snapshot: Snapshot, settings: Settings) -> Verdict: ...
