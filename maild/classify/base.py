"""The types every detector shares: what it reads (MailView, Settings) and what it says (Verdict)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from maild.bounces.model import FailedRecipient

HUMAN, BOUNCE, AUTO_REPLY, FEEDBACK, LIST, NOTIFICATION, UNKNOWN = (
    "human", "bounce", "auto_reply", "feedback_report", "list", "notification", "unknown")
KINDS = (HUMAN, BOUNCE, AUTO_REPLY, FEEDBACK, LIST, NOTIFICATION, UNKNOWN)
MACHINE = frozenset(KINDS) - {HUMAN}


@dataclass(frozen=True)
class Settings:
    instance_id: str = ""
    return_path: str | None = None  # outbound.return_path: VERP addresses are its local part + maild.<instance>.<token>


class MailView(Protocol):
    """What detectors may look at, taken from the parsed message when first asked (maild/classify/view.py)."""

    headers: dict[str, list[str]]  # lower-cased name -> raw values
    content_type: str
    report_type: str
    message: Any  # the email.message.Message (for detectors that walk parts)

    def header(self, name: str) -> str: ...  # the first value, decoded, on one line

    @property
    def from_addr(self) -> str: ...

    @property
    def from_name(self) -> str: ...

    @property
    def subject(self) -> str: ...

    @property
    def return_path(self) -> str | None: ...  # None: no Return-Path header; "": the null sender <>

    @property
    def envelope_to(self) -> tuple[str, ...]: ...  # To, Cc, Delivered-To, X-Original-To, Envelope-To (case kept)

    @property
    def text(self) -> str: ...  # the human-readable text (first text/plain part, else the HTML's text), cut

    @property
    def date(self) -> datetime | None: ...


@dataclass(frozen=True)
class Verdict:
    detector: str
    kind: str | None = None  # None: this detector has no opinion
    evidence: str = ""
    recipients: tuple[FailedRecipient, ...] = ()
    return_date: str | None = None
    verp_token: str | None = None


@dataclass(frozen=True)
class Classification:
    kind: str
    reasons: list[str]
    recipients: list[FailedRecipient] = field(default_factory=list)
    return_date: str | None = None
    tokens: list[str] = field(default_factory=list)  # our tracking tokens in the mail (the original we sent)
    verp_token: str | None = None  # the token of the VERP address it was sent to

    def stored(self) -> dict[str, Any] | None:
        """What `messages.machine` keeps: nothing for plain human mail (the common case: its row stays small)."""
        if self.kind == HUMAN and not self.verp_token and len(self.reasons) == 1:
            return None
        return self.as_json()

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "reasons": list(self.reasons),
                "recipients": [r.as_json() for r in self.recipients], "return_date": self.return_date,
                "tokens": list(self.tokens), "verp_token": self.verp_token}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Classification | None:
        if not data:
            return None
        return cls(kind=data.get("kind") or UNKNOWN, reasons=list(data.get("reasons") or []),
                   recipients=[FailedRecipient.from_json(r) for r in data.get("recipients") or []],
                   return_date=data.get("return_date"), tokens=list(data.get("tokens") or []),
                   verp_token=data.get("verp_token"))


class Detector(Protocol):
    def __call__(self, mail: MailView, settings: Settings) -> Verdict: ...
