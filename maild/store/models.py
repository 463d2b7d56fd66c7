"""The schema. Raw bytes live in the blob store; rows keep their sha256 digest.

The `events` table is append-only: it is each third party's timeline and the rules engine's input.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Text, UniqueConstraint
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
    id: int | None = Field(default=None, primary_key=True)
    type: str = Field(index=True, max_length=100)
    occurred_at: datetime = _ts(nullable=False, index=True)
    recorded_at: datetime = _ts(nullable=False, default=utcnow)
    thirdparty_id: int | None = Field(default=None, index=True)
    message_id: int | None = Field(default=None, foreign_key="messages.id", index=True)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
