"""Write one parsed batch in the caller's transaction, with a handful of set-based statements.

Per batch, not per message: one look-up of already-recorded locations, one of already-stored
digests, then multi-row inserts of messages, attachments, `mail.received` events and locations.
Messages are inserted with ON CONFLICT DO NOTHING and told apart by the digests the insert
returns, so a concurrent daemon storing the same mail makes ours a duplicate, never an error.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from maild.clock import utcnow
from maild.ingest.parse import ParsedMail, Rejected
from maild.store.checkpoints import FolderRef
from maild.store.db import Database
from maild.store.models import Attachment, Event, Location, Message, Quarantine

_loc = Location.__table__
_msg = Message.__table__
_att = Attachment.__table__
_quar = Quarantine.__table__
_evt = Event.__table__

MESSAGE_FIELDS = ("raw_sha256", "size", "header_message_id", "in_reply_to", "references", "subject", "from_name",
                  "from_addr", "to_addrs", "cc_addrs", "reply_to", "date", "text_body", "html_body", "parser",
                  "defects", "auth", "auth_reason", "kind", "machine")


class Outcome(enum.StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # same bytes already stored: this location now points at it
    QUARANTINED = "quarantined"
    ALREADY_SEEN = "already-seen"  # this exact location was recorded before (a re-delivery)


@dataclass(frozen=True)
class Fetched:
    """One message as a source delivered it: IMAP (uidvalidity, uid) or a Maildir key."""

    raw: bytes
    uid: int = 0
    uidvalidity: int = 0
    key: str = ""

    @property
    def place(self) -> tuple[int, int, str]:
        return (self.uidvalidity, self.uid, self.key)


@dataclass(frozen=True)
class Result:
    item: Fetched
    outcome: Outcome
    header_message_id: str | None
    message_id: int | None = None  # the stored message this location points at


def store_batch(db: Database, conn: Connection, ref: FolderRef, items: Sequence[Fetched],
                parsed: Sequence[ParsedMail | Rejected]) -> list[Result]:
    now = utcnow()
    seen = _recorded_places(conn, ref, items)
    pending = [(item, p) for item, p in zip(items, parsed, strict=True) if item.place not in seen]
    origin = {"source": ref.source_name, "folder": ref.folder}
    stored = insert_messages(db, conn, [p for _, p in pending if isinstance(p, ParsedMail)], origin, now)
    results: list[Result] = []
    rows = []
    for item, p in zip(items, parsed, strict=True):
        if item.place in seen:
            results.append(Result(item, Outcome.ALREADY_SEEN, getattr(p, "header_message_id", None)))
            continue
        seen.add(item.place)
        row = {"source_id": ref.source_id, "folder": ref.folder, "uidvalidity": item.uidvalidity, "uid": item.uid,
               "key": item.key, "seen_at": now, "message_id": None, "quarantine_id": None}
        if isinstance(p, Rejected):
            row["quarantine_id"] = quarantine(conn, ref, p, now)
            results.append(Result(item, Outcome.QUARANTINED, None))
        else:
            row["message_id"], is_new = stored[p.raw_sha256]
            outcome = Outcome.STORED if is_new else Outcome.DUPLICATE
            results.append(Result(item, outcome, p.header_message_id, row["message_id"]))
            stored[p.raw_sha256] = (row["message_id"], False)  # a second copy in the same batch is a duplicate
        rows.append(row)
    if rows:
        conn.execute(db.insert_ignore(_loc), rows)
    return results


def insert_messages(db: Database, conn: Connection, parsed: Sequence[ParsedMail], origin: dict[str, str],
                    now: datetime | None = None) -> dict[str, tuple[int, bool]]:
    """Store each distinct message once; return digest -> (message id, newly stored?)."""
    now = now or utcnow()
    unique = {p.raw_sha256: p for p in parsed}
    if not unique:
        return {}
    known = dict(conn.execute(select(_msg.c.raw_sha256, _msg.c.id).where(_msg.c.raw_sha256.in_(list(unique)))).all())
    fresh = [p for digest, p in unique.items() if digest not in known]
    inserted: dict[str, int] = {}
    if fresh:
        rows = [{**{f: getattr(p, f) for f in MESSAGE_FIELDS}, "ingested_at": now} for p in fresh]
        statement = db.insert_ignore(_msg).returning(_msg.c.raw_sha256, _msg.c.id)
        inserted = dict(conn.execute(statement, rows).all())
        raced = [d for d in unique if d not in known and d not in inserted]
        if raced:  # stored meanwhile by another daemon
            known |= dict(conn.execute(select(_msg.c.raw_sha256, _msg.c.id).where(_msg.c.raw_sha256.in_(raced))).all())
        _insert_children(conn, [p for p in fresh if p.raw_sha256 in inserted], inserted, origin, now)
    return {d: (inserted[d], True) if d in inserted else (known[d], False) for d in unique}


def _insert_children(conn: Connection, parsed: list[ParsedMail], ids: dict[str, int], origin: dict[str, str],
                     now: datetime) -> None:
    attachments = [
        {"message_id": ids[p.raw_sha256], "position": a.position, "filename": a.filename,
         "content_type": a.content_type[:255], "content_id": a.content_id, "size": a.size, "sha256": a.sha256}
        for p in parsed for a in p.attachments]
    if attachments:
        conn.execute(_att.insert(), attachments)
    if parsed:
        conn.execute(_evt.insert(), [
            {"type": "mail.received", "occurred_at": p.date or now, "recorded_at": now,
             "message_id": ids[p.raw_sha256], "thirdparty_id": None,
             "data": {**origin, "subject": p.subject, "from": p.from_addr, "message_id": p.header_message_id}}
            for p in parsed])


def quarantine(conn: Connection, ref: FolderRef, rejected: Rejected, now: datetime) -> int:
    """The open quarantine entry for these bytes (one per distinct raw message), created when missing."""
    existing = conn.execute(
        select(_quar.c.id).where(_quar.c.raw_sha256 == rejected.raw_sha256, _quar.c.resolved_message_id.is_(None))
    ).scalar()
    if existing is not None:
        return existing
    return conn.execute(
        _quar.insert().returning(_quar.c.id),
        {"raw_sha256": rejected.raw_sha256, "size": rejected.size, "reason": rejected.reason,
         "source_name": ref.source_name, "folder": ref.folder, "created_at": now},
    ).scalar_one()


def _recorded_places(conn: Connection, ref: FolderRef, items: Sequence[Fetched]) -> set[tuple[int, int, str]]:
    if not items:
        return set()
    query = select(_loc.c.uidvalidity, _loc.c.uid, _loc.c.key).where(
        _loc.c.source_id == ref.source_id, _loc.c.folder == ref.folder)
    keys = [i.key for i in items if i.key]
    if keys:
        query = query.where(_loc.c.key.in_(keys))
    else:
        query = query.where(_loc.c.uidvalidity.in_({i.uidvalidity for i in items}),
                            _loc.c.uid.in_([i.uid for i in items]))
    return {(row[0], row[1], row[2]) for row in conn.execute(query)}
