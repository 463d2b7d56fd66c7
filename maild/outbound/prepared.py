"""The values a mail passes through on its way out: the request and the prepared bytes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maild.outbound.recipients import Recipient


@dataclass
class PreparedMail:
    raw: bytes
    subject: str
    recipient: Recipient
    message_id: str
    token: str
    language: str
    attachments: list[str] = field(default_factory=list)
    # Tracked links' URLs (link i is links[i]) not stored yet: `queue` stores them with the outbox row.
    # Empty after `prepare`, which stores them at once.
    links: list[str] = field(default_factory=list)
    # `raw` is already in the blob store and synced to disk (a PreparePool worker did it): `queue` skips the sync.
    durable: bool = False


@dataclass(frozen=True)
class MailRequest:
    """The arguments of `prepare`, as a value (for `prepare_many`)."""

    template: str
    to: str
    invoice_ref: str | None = None
    attach: tuple[Path, ...] = ()
    language: str | None = None
    extra: dict[str, Any] | None = None
    auto_submitted: bool = False  # a rule's mail: Auto-Submitted: auto-generated (RFC 3834)
    allow_undeliverable: bool = False  # send even to an address marked undeliverable (a person's override)
    invoice_copy: bool = True  # with invoice_ref: attach the invoice as a PDF
    dunning_level: int | None = None  # with invoice_ref: attach the reminder letter of this level
    reminder_date: str | None = None  # the letter's date (ISO; default today); payment due dunning.payment_days later

