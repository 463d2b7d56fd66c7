"""Quarantine review: list, show, and retry (parse the kept raw bytes again and store them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, select, update

from maild.classify.base import Settings as ClassifySettings
from maild.clock import utcnow
from maild.ingest.parse import ParsedMail, Rejected, oversized, parse_and_store
from maild.ingest.store import insert_messages
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.store.models import Location, Quarantine

_quar = Quarantine.__table__
_loc = Location.__table__


@dataclass(frozen=True)
class RetryOutcome:
    quarantine_id: int
    message_id: int | None
    reason: str | None  # why it is still in quarantine
    oversized_bytes: int | None = None  # the raw size, when it was over the limit and therefore not read


def entries(db: Database, include_resolved: bool = False) -> list[Quarantine]:
    with db.session() as session:
        query = select(Quarantine).order_by(Quarantine.id)
        if not include_resolved:
            query = query.where(Quarantine.resolved_message_id.is_(None))
        return list(session.scalars(query))


def entry(db: Database, quarantine_id: int) -> Quarantine | None:
    with db.session() as session:
        return session.get(Quarantine, quarantine_id)


def retry(db: Database, blobs: BlobStore, quarantine_id: int, max_bytes: int,
          trusted_authserv_ids: frozenset[str] = frozenset(), classify: ClassifySettings | None = None,
          also: Callable[[Connection, Quarantine, RetryOutcome], None] | None = None) -> RetryOutcome:
    """Parse the entry's raw bytes again and store the message; a raw file over `max_bytes` is not read (it stays
    quarantined as oversized, like at ingest). `also(conn, entry before, outcome)` runs in the transaction that
    records the retry (not for an entry resolved before: nothing changes)."""
    item = entry(db, quarantine_id)
    if item is None:
        raise LookupError(f"no quarantine entry {quarantine_id}")
    if item.resolved_message_id is not None:
        return RetryOutcome(quarantine_id, item.resolved_message_id, None)
    if not blobs.exists(item.raw_sha256):
        raise FileNotFoundError(f"raw bytes of quarantine entry {quarantine_id} are missing from the blob store")
    size = blobs.size(item.raw_sha256)
    too_big = size > max_bytes  # decided by the file's size, as at ingest: an oversized message is never read whole
    if too_big:
        parsed: ParsedMail | Rejected = oversized(item.raw_sha256, size, max_bytes)
    else:
        parsed = parse_and_store(blobs.get(item.raw_sha256), str(blobs.root), max_bytes, trusted_authserv_ids,
                                 classify)
    with db.engine.begin() as conn:
        conn.execute(update(_quar).where(_quar.c.id == quarantine_id)
                     .values(retries=_quar.c.retries + 1, last_retry_at=utcnow()))
        if not isinstance(parsed, ParsedMail):
            conn.execute(update(_quar).where(_quar.c.id == quarantine_id).values(reason=parsed.reason))
            outcome = RetryOutcome(quarantine_id, None, parsed.reason, size if too_big else None)
        else:
            origin = {"source": item.source_name, "folder": item.folder, "via": f"quarantine retry {quarantine_id}"}
            message_id, _ = insert_messages(db, conn, [parsed], origin)[parsed.raw_sha256]
            conn.execute(update(_quar).where(_quar.c.id == quarantine_id).values(resolved_message_id=message_id))
            conn.execute(update(_loc).where(_loc.c.quarantine_id == quarantine_id).values(message_id=message_id))
            outcome = RetryOutcome(quarantine_id, message_id, None)
        if also is not None:
            also(conn, item, outcome)
    return outcome


def pending_ids(db: Database) -> list[int]:
    with db.engine.connect() as conn:
        return list(conn.scalars(select(_quar.c.id).where(_quar.c.resolved_message_id.is_(None)).order_by(_quar.c.id)))
