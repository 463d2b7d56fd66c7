"""The schema. Raw bytes live in the blob store; rows keep their sha256 digest.

The `events` table is append-only: it is each third party's timeline and the rules engine's input.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    LargeBinary,
    Numeric,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from maild.clock import utcnow


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kw))


class Source(SQLModel, table=True):
    __tablename__ = "sources"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=200)
    kind: str = Field(max_length=20)
    address: str = Field(default="", max_length=500, description="host/user or path, never a secret")


class FolderCheckpoint(SQLModel, table=True):
    """Per-folder progress, status for `maild status`, and the lease that makes one consumer per folder."""

    __tablename__ = "folder_checkpoints"
    __table_args__ = (UniqueConstraint("source_id", "folder"),)
    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="sources.id", index=True)
    folder: str = Field(max_length=500)
    uidvalidity: int | None = Field(default=None, sa_type=BigInteger)
    last_uid: int = Field(default=0, sa_type=BigInteger)
    server_uidnext: int | None = Field(default=None, sa_type=BigInteger)
    server_messages: int | None = None
    last_success_at: datetime | None = _ts(nullable=True)
    last_error: str | None = Field(default=None, sa_type=Text)
    last_error_at: datetime | None = _ts(nullable=True)
    lock_owner: str | None = Field(default=None, max_length=200)
    lock_expires_at: datetime | None = _ts(nullable=True)


class Location(SQLModel, table=True):
    """Where a message was seen: exactly one row per (source, folder, UIDVALIDITY, UID).

    Maildir locations use uidvalidity = uid = 0 and the file's unique name as `key`.
    """

    __tablename__ = "locations"
    __table_args__ = (UniqueConstraint("source_id", "folder", "uidvalidity", "uid", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="sources.id")
    folder: str = Field(max_length=500)
    uidvalidity: int = Field(sa_type=BigInteger)
    uid: int = Field(sa_type=BigInteger)
    key: str = Field(default="", max_length=300)
    message_id: int | None = Field(default=None, foreign_key="messages.id", index=True)
    quarantine_id: int | None = Field(default=None, foreign_key="quarantine.id", index=True)
    seen_at: datetime = _ts(nullable=False, default=utcnow)


class Message(SQLModel, table=True):
    __tablename__ = "messages"
    id: int | None = Field(default=None, primary_key=True)
    raw_sha256: str = Field(unique=True, max_length=64)
    size: int = Field(sa_type=BigInteger)
    header_message_id: str | None = Field(default=None, index=True, max_length=998)
    in_reply_to: str | None = Field(default=None, sa_type=Text)
    references: list[str] = Field(default_factory=list, sa_type=JSON)
    subject: str | None = Field(default=None, sa_type=Text)
    from_name: str | None = Field(default=None, sa_type=Text)
    from_addr: str | None = Field(default=None, index=True, max_length=500)
    to_addrs: list[list[str]] = Field(default_factory=list, sa_type=JSON)
    cc_addrs: list[list[str]] = Field(default_factory=list, sa_type=JSON)
    reply_to: list[list[str]] = Field(default_factory=list, sa_type=JSON)
    date: datetime | None = _ts(nullable=True)
    text_body: str = Field(default="", sa_type=Text)
    html_body: str = Field(default="", sa_type=Text)
    parser: str = Field(default="mail-parser", max_length=40)
    defects: list[str] = Field(default_factory=list, sa_type=JSON)
    ingested_at: datetime = _ts(nullable=False, default=utcnow)
    # The sender's authentication per our trusted server's Authentication-Results (maild/ingest/authentication.py):
    # pass | fail | none; NULL when none was configured. `fail`: filed, but no rule, meeting or reply counts it.
    auth: str | None = Field(default=None, max_length=8)
    auth_reason: str | None = Field(default=None, sa_type=Text)
    # What kind of mail it is (maild/classify): human | bounce | auto_reply | feedback_report | list | notification |
    # unknown; NULL: not classified (before 0007, or classification off). `machine`: reasons, recipients, tokens.
    kind: str | None = Field(default=None, max_length=20, index=True)
    machine: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class Attachment(SQLModel, table=True):
    __tablename__ = "attachments"
    __table_args__ = (UniqueConstraint("message_id", "position"),)
    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="messages.id", index=True)
    position: int
    filename: str | None = Field(default=None, sa_type=Text)
    content_type: str = Field(default="application/octet-stream", max_length=255)
    content_id: str | None = Field(default=None, sa_type=Text)
    size: int = Field(sa_type=BigInteger)
    sha256: str = Field(max_length=64, index=True)


class Quarantine(SQLModel, table=True):
    """A message maild could not store, kept with its raw bytes (by digest) and the reason."""

    __tablename__ = "quarantine"
    id: int | None = Field(default=None, primary_key=True)
    raw_sha256: str = Field(max_length=64, index=True)
    size: int = Field(sa_type=BigInteger)
    reason: str = Field(sa_type=Text)
    source_name: str = Field(default="", max_length=200)
    folder: str = Field(default="", max_length=500)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    retries: int = 0
    last_retry_at: datetime | None = _ts(nullable=True)
    resolved_message_id: int | None = Field(default=None, foreign_key="messages.id")


class Event(SQLModel, table=True):
    """One interaction on the timeline. Append-only: rows are never updated or deleted."""

    __tablename__ = "events"
    # A third party's timeline, newest first, one page at a time (maild.business.history).
    __table_args__ = (Index("ix_events_timeline", "thirdparty_id", "shown_at", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    type: str = Field(index=True, max_length=100)
    occurred_at: datetime = _ts(nullable=False, index=True)
    recorded_at: datetime = _ts(nullable=False, default=utcnow)
    thirdparty_id: int | None = Field(default=None, index=True)
    message_id: int | None = Field(default=None, foreign_key="messages.id", index=True)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    # Where the timeline shows it: a decided mail (mail.matched, mail.assigned) at the mail's own date, anything else
    # at occurred_at. Set by the database on insert (a trigger of migration 0007_web), never by writers.
    shown_at: datetime | None = _ts(nullable=True)


# --- Third-party directory ---------------------------------------------------------------------


class ThirdParty(SQLModel, table=True):
    """A customer, supplier or prospect: the owner of a timeline."""

    __tablename__ = "thirdparties"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=300)
    name_key: str = Field(default="", max_length=300, index=True, description="normalised name, for lookups")
    kind: str = Field(default="customer", max_length=20)
    external_id: str | None = Field(default=None, unique=True, max_length=200)
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    custom_fields: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    owner: str | None = Field(default=None, max_length=200)
    language: str | None = Field(default=None, max_length=20)
    # Postal address (printed in a letter's address window); see maild/directory/postal.py.
    street: str | None = Field(default=None, max_length=200)
    zip: str | None = Field(default=None, max_length=20)
    town: str | None = Field(default=None, max_length=200)
    country: str | None = Field(default=None, max_length=100)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    updated_at: datetime = _ts(nullable=False, default=utcnow)


class Contact(SQLModel, table=True):
    __tablename__ = "contacts"
    id: int | None = Field(default=None, primary_key=True)
    thirdparty_id: int = Field(foreign_key="thirdparties.id", index=True)
    name: str = Field(default="", max_length=300)
    name_key: str = Field(default="", max_length=300, index=True, description="normalised name, for lookups")
    role: str | None = Field(default=None, max_length=200)
    phones: list[str] = Field(default_factory=list, sa_type=JSON)
    external_id: str | None = Field(default=None, unique=True, max_length=200)
    language: str | None = Field(default=None, max_length=20)
    # For letters: "Sehr geehrte Frau Dr. Nord" (salutation Frau/Herr/Ms/Mr, title, last name), and a postal
    # address of their own (else their company's).
    salutation: str | None = Field(default=None, max_length=20)
    title: str | None = Field(default=None, max_length=50)
    first_name: str | None = Field(default=None, max_length=150)
    last_name: str | None = Field(default=None, max_length=150)
    street: str | None = Field(default=None, max_length=200)
    zip: str | None = Field(default=None, max_length=20)
    town: str | None = Field(default=None, max_length=200)
    country: str | None = Field(default=None, max_length=100)
    created_at: datetime = _ts(nullable=False, default=utcnow)


class MailAddress(SQLModel, table=True):
    """A normalised mail address of a contact, or a general address of a third party (contact_id NULL)."""

    __tablename__ = "mail_addresses"
    __table_args__ = (UniqueConstraint("address", "thirdparty_id", "contact_id"),)
    id: int | None = Field(default=None, primary_key=True)
    address: str = Field(max_length=320, index=True)
    thirdparty_id: int = Field(foreign_key="thirdparties.id", index=True)
    contact_id: int | None = Field(default=None, foreign_key="contacts.id", index=True)


class MailDomain(SQLModel, table=True):
    __tablename__ = "mail_domains"
    __table_args__ = (UniqueConstraint("domain", "thirdparty_id"),)
    id: int | None = Field(default=None, primary_key=True)
    domain: str = Field(max_length=255, index=True)
    thirdparty_id: int = Field(foreign_key="thirdparties.id", index=True)


class Document(SQLModel, table=True):
    """A business document (invoice, proposal, order) whose reference can appear in mail."""

    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("ref", "kind"),)
    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(max_length=100, index=True)
    kind: str = Field(default="invoice", max_length=40)
    thirdparty_id: int = Field(foreign_key="thirdparties.id", index=True)


class TrackingId(SQLModel, table=True):
    """Our tracking tokens, put into outbound Message-IDs and plus-addresses, and who they belong to."""

    __tablename__ = "tracking_ids"
    id: int | None = Field(default=None, primary_key=True)
    token: str = Field(unique=True, max_length=64)
    thirdparty_id: int | None = Field(default=None, foreign_key="thirdparties.id")
    contact_id: int | None = Field(default=None, foreign_key="contacts.id")
    created_at: datetime = _ts(nullable=False, default=utcnow)


# --- Matching, triage and filing -----------------------------------------------------------------


class MessageMatch(SQLModel, table=True):
    """The decision for one message: matched, ambiguous or unmatched (the triage queue), or assigned.

    `verdicts` keeps what every matcher said, in order, for `maild explain`.
    """

    __tablename__ = "message_matches"
    message_id: int = Field(foreign_key="messages.id", primary_key=True)
    status: str = Field(max_length=20, index=True)
    thirdparty_id: int | None = Field(default=None, foreign_key="thirdparties.id", index=True)
    contact_id: int | None = Field(default=None, foreign_key="contacts.id")
    matcher: str | None = Field(default=None, max_length=40)
    confidence: float = 0.0
    reason: str = Field(default="", sa_type=Text)
    verdicts: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    decided_at: datetime = _ts(nullable=False, default=utcnow)


class FilingTask(SQLModel, table=True):
    """A move/flag to do on the IMAP server after a message was decided; retried until done."""

    __tablename__ = "filing_tasks"
    __table_args__ = (UniqueConstraint("location_id", "target_folder"),)
    id: int | None = Field(default=None, primary_key=True)
    location_id: int = Field(foreign_key="locations.id", index=True)
    message_id: int = Field(foreign_key="messages.id", index=True)
    target_folder: str = Field(default="", max_length=500)
    # Set when the message was filed before and now lives there (a refile after triage), not at its location.
    from_folder: str | None = Field(default=None, max_length=500)
    # The folder as it exists on the server once done (its namespace prefix and delimiter; a safer name when
    # the server refused the planned one): where the message is now, what a later refile starts from.
    filed_folder: str | None = Field(default=None, max_length=500)
    keywords: list[str] = Field(default_factory=list, sa_type=JSON)
    action: str = Field(default="move", max_length=20)
    status: str = Field(default="pending", max_length=20, index=True)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    done_at: datetime | None = _ts(nullable=True)


# --- Outbound mail and tracking ------------------------------------------------------------------


class OutboxMessage(SQLModel, table=True):
    """One mail to send, rendered and stored before any SMTP attempt; sent at most once per key.

    status: queued -> sending -> sent | retry (-> sending ...) | failed | ambiguous | cancelled. A sender
    claims a row by setting claimed_by/claimed_until; a claim that expired while `sending` is never re-sent
    blindly: the row goes to `retry` only when its DATA never began (else `ambiguous`, for a person).
    """

    __tablename__ = "outbox"
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, max_length=300)
    status: str = Field(default="queued", max_length=20, index=True)
    template: str | None = Field(default=None, max_length=200)
    thirdparty_id: int | None = Field(default=None, foreign_key="thirdparties.id", index=True)
    contact_id: int | None = Field(default=None, foreign_key="contacts.id")
    sender: str = Field(max_length=320)
    recipients: list[str] = Field(default_factory=list, sa_type=JSON)
    subject: str = Field(default="", sa_type=Text)
    header_message_id: str = Field(max_length=998, index=True)
    tracking_token: str | None = Field(default=None, max_length=64, index=True)
    raw_sha256: str = Field(max_length=64)
    size: int = Field(default=0, sa_type=BigInteger)
    transport: str = Field(default="default", max_length=100)
    attempts: int = 0
    next_attempt_at: datetime | None = _ts(nullable=True, index=True)
    last_error: str | None = Field(default=None, sa_type=Text)
    smtp_reply: str | None = Field(default=None, sa_type=Text)
    claimed_by: str | None = Field(default=None, max_length=200)
    claimed_until: datetime | None = _ts(nullable=True)
    # Set (committed) just before SMTP DATA, with the connection it began on: a claim found expired after
    # this may have been delivered, so it is never re-sent automatically (at most once); the row becomes
    # `ambiguous` and waits for a person (`maild outbox retry` or `maild outbox mark-sent`).
    data_started_at: datetime | None = _ts(nullable=True)
    data_connection: str | None = Field(default=None, max_length=200)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    sent_at: datetime | None = _ts(nullable=True)
    sent_folder_done: bool = False


class OutboxAttempt(SQLModel, table=True):
    """One attempt to send an outbox row (or a person's decision about it): its delivery story, kept across
    `maild outbox retry`. outcome: sent | retry | failed | refused | ambiguous | requeued | cancelled."""

    __tablename__ = "outbox_attempts"
    id: int | None = Field(default=None, primary_key=True)
    outbox_id: int = Field(foreign_key="outbox.id", index=True)
    at: datetime = _ts(nullable=False, default=utcnow)
    outcome: str = Field(max_length=20)
    data_started_at: datetime | None = _ts(nullable=True)
    connection: str | None = Field(default=None, max_length=200)
    reply_code: int | None = None
    reply: str | None = Field(default=None, sa_type=Text)
    detail: str | None = Field(default=None, sa_type=Text)


class TrackingLink(SQLModel, table=True):
    """A link in a sent mail: the click redirect goes to `url` and nowhere else."""

    __tablename__ = "tracking_links"
    __table_args__ = (UniqueConstraint("token", "link"),)
    id: int | None = Field(default=None, primary_key=True)
    token: str = Field(max_length=64, index=True)
    link: int
    url: str = Field(sa_type=Text)


class TrackingHits(SQLModel, table=True):
    """One client's opens of a mail (or clicks of one of its links), counted on the first one's event.

    The client is a hash of its IP prefix and user agent. Repeats within `tracking.repeat_window` of `first_at`
    add to `hits` instead of writing a new event, so a flood is one timeline line with its exact count.
    """

    __tablename__ = "tracking_hits"
    __table_args__ = (Index("ix_tracking_hits_repeat", "outbox_id", "client", "first_at"),)
    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(foreign_key="events.id", unique=True)
    outbox_id: int
    kind: str = Field(max_length=1)  # "o" open, "c" click
    link: int = -1  # the clicked link's index; -1 for opens
    client: str = Field(max_length=32)
    first_at: datetime = _ts(nullable=False)
    last_at: datetime = _ts(nullable=False)
    hits: int = 1


# --- Business records: invoices, payments, meetings, tasks ---------------------------------------


def _money(**kw: Any) -> Any:
    return Field(sa_column=Column(Numeric(14, 2), **kw))


class Invoice(SQLModel, table=True):
    """An invoice of a third party, with its dunning state (the dunning rules read and advance it).

    status: open | paid | disputed | paused | cancelled | held (see InvoiceHold). `amount` is the total due (VAT
    included).
    """

    __tablename__ = "invoices"
    # The dunning sweeps: windows on due_on, and the repeat of the last level on last_dunned_at.
    __table_args__ = (Index("ix_invoices_status_due_on", "status", "due_on"),
                      Index("ix_invoices_status_level_dunned", "status", "dunning_level", "last_dunned_at"))
    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(unique=True, max_length=100)
    thirdparty_id: int = Field(foreign_key="thirdparties.id", index=True)
    contact_id: int | None = Field(default=None, foreign_key="contacts.id")
    issued_on: date = Field(sa_column=Column(Date, nullable=False))
    due_on: date = Field(sa_column=Column(Date, nullable=False))
    currency: str = Field(default="EUR", max_length=3)
    amount: Decimal = _money(nullable=False)
    paid_amount: Decimal = _money(nullable=False, default=Decimal("0"))
    status: str = Field(default="open", max_length=20)
    lines: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    dunning_level: int = 0
    dunning_repeats: int = 0
    last_dunned_at: datetime | None = _ts(nullable=True)
    late_fees: Decimal = _money(nullable=False, default=Decimal("0"))
    paid_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    updated_at: datetime = _ts(nullable=False, default=utcnow)


class InvoiceHold(SQLModel, table=True):
    """Why an invoice in dunning waits for a person (status `held`), who must look, and how it ended.

    kind: reply (a human reply in a reminder's thread) | number (a human mail naming the invoice) | phrase
    (a configured phrase such as "bezahlt") | bounce (a reminder was not delivered) | promise | dispute | manual.
    One hold per (invoice, message): seeing the same mail again holds nothing twice.
    """

    __tablename__ = "invoice_holds"
    __table_args__ = (UniqueConstraint("invoice_id", "message_id"),)
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", index=True)
    kind: str = Field(max_length=20)
    reason: str = Field(default="", sa_type=Text)
    message_id: int | None = Field(default=None, foreign_key="messages.id")
    owner: str | None = Field(default=None, max_length=200)
    task_id: int | None = Field(default=None, foreign_key="tasks.id")
    status_before: str = Field(default="open", max_length=20)
    until: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    held_at: datetime = _ts(nullable=False, default=utcnow)
    escalated_at: datetime | None = _ts(nullable=True)
    resolved_at: datetime | None = _ts(nullable=True, index=True)
    resolution: str | None = Field(default=None, sa_type=Text)


class Payment(SQLModel, table=True):
    __tablename__ = "payments"
    __table_args__ = (UniqueConstraint("invoice_id", "reference"),)
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", index=True)
    amount: Decimal = _money(nullable=False)
    paid_on: date = Field(sa_column=Column(Date, nullable=False))
    reference: str = Field(default="", max_length=200, description="bank reference; unique per invoice")
    created_at: datetime = _ts(nullable=False, default=utcnow)


class Meeting(SQLModel, table=True):
    """An agenda event with attendees, entered by hand, imported, or read from a text/calendar invitation.

    attendees: [{"name", "address", "contact_id", "thirdparty_id", "internal"}]; internal = one of us.
    """

    __tablename__ = "meetings"
    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(unique=True, max_length=500, description="iCalendar UID, or generated")
    sequence: int = 0
    thirdparty_id: int | None = Field(default=None, foreign_key="thirdparties.id", index=True)
    subject: str = Field(default="", sa_type=Text)
    location: str = Field(default="", sa_type=Text)
    start_at: datetime = _ts(nullable=False)
    end_at: datetime = _ts(nullable=False, index=True)
    organizer: str | None = Field(default=None, max_length=320)
    attendees: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    next_steps: list[str] = Field(default_factory=list, sa_type=JSON)
    status: str = Field(default="confirmed", max_length=20)
    owner: str | None = Field(default=None, max_length=200)
    message_id: int | None = Field(default=None, foreign_key="messages.id")
    created_at: datetime = _ts(nullable=False, default=utcnow)
    updated_at: datetime = _ts(nullable=False, default=utcnow)


class Task(SQLModel, table=True):
    """Something a person must do (kind=task) or an agenda entry (kind=agenda), often created by a rule."""

    __tablename__ = "tasks"
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(default="task", max_length=20)
    title: str = Field(sa_type=Text)
    thirdparty_id: int | None = Field(default=None, foreign_key="thirdparties.id", index=True)
    owner: str | None = Field(default=None, max_length=200, index=True)
    due_at: datetime | None = _ts(nullable=True)
    status: str = Field(default="open", max_length=20, index=True)
    invoice_id: int | None = Field(default=None, foreign_key="invoices.id")
    meeting_id: int | None = Field(default=None, foreign_key="meetings.id")
    message_id: int | None = Field(default=None, foreign_key="messages.id")
    rule: str | None = Field(default=None, max_length=200)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    done_at: datetime | None = _ts(nullable=True)


# --- Rules engine ----------------------------------------------------------------------------------


class RuleCursor(SQLModel, table=True):
    """How far the rules engine has consumed the events table (durable across restarts)."""

    __tablename__ = "rule_cursors"
    name: str = Field(primary_key=True, max_length=100)
    last_event_id: int = Field(default=0, sa_type=BigInteger)
    updated_at: datetime = _ts(nullable=False, default=utcnow)


class RuleLedger(SQLModel, table=True):
    """One row per rule action taken (or attempted): its idempotency key makes it happen once.

    status: running -> done | failed. `reason` says why the rule fired (trigger and conditions).
    """

    __tablename__ = "rule_ledger"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=500)
    rule: str = Field(max_length=200, index=True)
    file: str = Field(default="", max_length=500)
    trigger: str = Field(default="", max_length=200)
    subject: str = Field(default="", max_length=200, index=True, description="e.g. invoice:12, event:345")
    step: int = 0
    action: str = Field(max_length=40)
    status: str = Field(default="running", max_length=20, index=True)
    reason: str = Field(default="", sa_type=Text)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    thirdparty_id: int | None = Field(default=None, index=True)
    created_at: datetime = _ts(nullable=False, default=utcnow, index=True)
    finished_at: datetime | None = _ts(nullable=True)


class Bounce(SQLModel, table=True):
    """One recipient of a delivery-failure notice (or a complaint report): what it says and which mail of ours.

    `counted`: it counts against the address's health (we sent to that address, or the notice came to the VERP
    address of the mail); a forged notice naming an address we never mailed is recorded but not counted.
    """

    __tablename__ = "bounces"
    __table_args__ = (UniqueConstraint("message_id", "address", name="uq_bounces_message_address"),)
    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="messages.id", index=True)
    outbox_id: int | None = Field(default=None, foreign_key="outbox.id", index=True)
    address: str = Field(max_length=320, index=True)
    action: str = Field(max_length=20)  # failed | delayed | complaint
    status: str | None = Field(default=None, max_length=20)
    diagnostic: str = Field(default="", sa_type=Text)
    reason: str = Field(default="", max_length=100)
    hard: bool = False
    counted: bool = False
    created_at: datetime = _ts(nullable=False, default=utcnow)


class AddressHealth(SQLModel, table=True):
    """Whether mail to an address arrives: `undeliverable` after a hard bounce or a complaint (or enough soft
    bounces within the window); a later human mail from the address clears it (state `ok`)."""

    __tablename__ = "address_health"
    id: int | None = Field(default=None, primary_key=True)
    address: str = Field(unique=True, max_length=320)
    state: str = Field(default="ok", max_length=20, index=True)  # ok | soft | undeliverable
    reason: str = Field(default="", sa_type=Text)
    status: str | None = Field(default=None, max_length=20)
    since: datetime | None = _ts(nullable=True)
    soft_count: int = 0
    first_soft_at: datetime | None = _ts(nullable=True)
    last_bounce_at: datetime | None = _ts(nullable=True)
    message_id: int | None = Field(default=None, foreign_key="messages.id")  # the notice that decided
    cleared_at: datetime | None = _ts(nullable=True)
    cleared_by_message_id: int | None = Field(default=None, foreign_key="messages.id")
    updated_at: datetime = _ts(nullable=False, default=utcnow)


class Lease(SQLModel, table=True):
    """A named, expiring lock in the database: e.g. the one active scheduler per database."""

    __tablename__ = "leases"
    name: str = Field(primary_key=True, max_length=100)
    owner: str = Field(max_length=200)
    expires_at: datetime = _ts(nullable=False)


class WorkerStatus(SQLModel, table=True):
    """What a running daemon's supervisor last reported about one of its workers (for `maild status`)."""

    __tablename__ = "worker_status"
    owner: str = Field(primary_key=True, max_length=200)
    name: str = Field(primary_key=True, max_length=300)
    state: str = Field(max_length=20)
    attempt: int = 0
    restarts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    last_error_at: datetime | None = _ts(nullable=True)
    retry_at: datetime | None = _ts(nullable=True)
    since: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


# APScheduler 3's SQLAlchemyJobStore table, declared here so the migrations create it and it matches the models.
apscheduler_jobs = Table(
    "apscheduler_jobs", SQLModel.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)


# --- Web app: users, API tokens, login throttling, the audit log ------------------------------------


class User(SQLModel, table=True):
    """A person who logs in to the web app. role: admin | staff | viewer. `session_epoch` goes up on logout,
    password change and disable: every session cookie signed with an older epoch stops working."""

    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, max_length=100)
    password_hash: str = Field(max_length=200)
    role: str = Field(default="viewer", max_length=20)
    disabled: bool = False
    session_epoch: int = 0
    created_at: datetime = _ts(nullable=False, default=utcnow)
    last_login_at: datetime | None = _ts(nullable=True)


class ApiToken(SQLModel, table=True):
    """A personal API token (`Authorization: Bearer`), stored as its sha256; the token itself is shown once."""

    __tablename__ = "api_tokens"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    name: str = Field(default="", max_length=200)
    token_sha256: str = Field(unique=True, max_length=64)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    last_used_at: datetime | None = _ts(nullable=True)
    revoked_at: datetime | None = _ts(nullable=True)


class LoginThrottle(SQLModel, table=True):
    """Failed logins per user name (known or not) in the current window; past the limit, logins wait."""

    __tablename__ = "login_throttle"
    key: str = Field(primary_key=True, max_length=200)
    failures: int = 0
    window_start: datetime = _ts(nullable=False)
    locked_until: datetime | None = _ts(nullable=True)


class AuditEntry(SQLModel, table=True):
    """One change made by a person (web, API or CLI): who, when, what, before and after. Append-only: database
    triggers refuse UPDATE and DELETE, and no route or command changes a row."""

    __tablename__ = "audit_log"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(nullable=False, default=utcnow, index=True)
    actor: str = Field(max_length=200, index=True)
    via: str = Field(max_length=10)  # web | api | cli
    action: str = Field(max_length=100, index=True)
    target: str = Field(default="", max_length=200, index=True)  # e.g. outbox:12, message:5
    before: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    after: dict[str, Any] | None = Field(default=None, sa_type=JSON)
