"""Parse, deduplicate and store a batch of fetched messages in one transaction, then ack.

Order of work for one batch: parse in worker processes (which also write blobs), sync blobs to
disk, then one transaction that records each location exactly once, stores each new message (or
quarantines it) with its `mail.received` event, and advances the folder's checkpoint under its
lease. Nothing is acknowledged before that commit; a crash anywhere re-delivers the batch and the
unique keys turn the re-delivery into no-ops.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import SQLAlchemyError

from maild.clock import utcnow
from maild.ingest.parse import ParsedMail, Rejected, parse_and_store
from maild.store.blobs import BlobStore, sha256_hex
from maild.store.checkpoints import FolderRef, LeaseLost, renew_lease
from maild.store.db import Database
from maild.store.models import Attachment, Event, Location, Message, Quarantine

log = logging.getLogger("maild.ingest")

_loc = Location.__table__
_msg = Message.__table__
_att = Attachment.__table__
_quar = Quarantine.__table__
_evt = Event.__table__


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


@dataclass(frozen=True)
class Result:
    item: Fetched
    outcome: Outcome
    header_message_id: str | None


@dataclass(frozen=True)
class Ack:
    """What to write to the checkpoint in the batch's transaction, under the folder lease."""

    owner: str
    ttl: float
    last_uid: int | None = None


class ParsedBatch:
    """A batch whose parsing was started in the worker pool; `results()` waits for it."""

    def __init__(self, items: Sequence[Fetched], futures: list[Future[ParsedMail | Rejected]]) -> None:
        self.items = list(items)
        self._futures = futures

    def results(self) -> list[ParsedMail | Rejected]:
        out: list[ParsedMail | Rejected] = []
        for item, future in zip(self.items, self._futures, strict=True):
            try:
                out.append(future.result())
            except Exception as exc:  # a worker died (e.g. out of memory on a monster mail)
                out.append(Rejected(sha256_hex(item.raw), len(item.raw), f"parser process failed: {exc!r}"))
        return out


class Pipeline:
    def __init__(self, db: Database, blobs: BlobStore, pool: Executor, max_bytes: int,
                 on_result: Callable[[FolderRef, Result], None] | None = None) -> None:
        self.db = db
        self.blobs = blobs
        self.pool = pool
        self.max_bytes = max_bytes
        self.on_result = on_result

    def start(self, items: Sequence[Fetched]) -> ParsedBatch:
        blob_dir = str(self.blobs.root)
        futures = [self.pool.submit(parse_and_store, item.raw, blob_dir, self.max_bytes) for item in items]
        return ParsedBatch(items, futures)

    def process(self, ref: FolderRef, items: Sequence[Fetched], ack: Ack | None = None) -> list[Result]:
        return self.commit(ref, self.start(items), ack)

    def commit(self, ref: FolderRef, batch: ParsedBatch, ack: Ack | None = None) -> list[Result]:
        parsed = batch.results()
        BlobStore.flush()
        try:
            with self.db.engine.begin() as conn:
                results = [self._store_one(conn, ref, item, p) for item, p in zip(batch.items, parsed, strict=True)]
                self._ack(conn, ref, ack)
        except LeaseLost:
            raise
        except SQLAlchemyError as exc:
            log.warning("batch store failed, storing one by one", extra={"fields": {
                "source": ref.source_name, "folder": ref.folder, "error": _short(exc)}})
            results = self._one_by_one(ref, batch.items, parsed, ack)
        for result in results:
            self._log(ref, result)
        return results

    def _one_by_one(self, ref: FolderRef, items: list[Fetched], parsed: list[ParsedMail | Rejected],
                    ack: Ack | None) -> list[Result]:
        """Isolate the message the database refuses; it goes to quarantine, the rest are stored."""
        with self.db.engine.begin() as conn:
            results = []
            for item, p in zip(items, parsed, strict=True):
                try:
                    with conn.begin_nested():
                        results.append(self._store_one(conn, ref, item, p))
                except SQLAlchemyError as exc:
                    rejected = Rejected(p.raw_sha256, p.size, f"could not store: {_short(exc)}")
                    with conn.begin_nested():
                        results.append(self._store_one(conn, ref, item, rejected))
            self._ack(conn, ref, ack)
        return results

    def _ack(self, conn: Connection, ref: FolderRef, ack: Ack | None) -> None:
        if ack is None:
            return
        values = {} if ack.last_uid is None else {"last_uid": ack.last_uid}
        renew_lease(conn, ref, ack.owner, ack.ttl, **values)

    def _store_one(self, conn: Connection, ref: FolderRef, item: Fetched, parsed: ParsedMail | Rejected) -> Result:
        location_id = conn.execute(
            self.db.insert_ignore(_loc)
            .values(source_id=ref.source_id, folder=ref.folder, uidvalidity=item.uidvalidity, uid=item.uid,
                    key=item.key, seen_at=utcnow())
            .returning(_loc.c.id)
        ).scalar()
        if location_id is None:
            return Result(item, Outcome.ALREADY_SEEN, getattr(parsed, "header_message_id", None))
        if isinstance(parsed, Rejected):
            quarantine_id = self._quarantine(conn, ref, parsed)
            conn.execute(update(_loc).where(_loc.c.id == location_id).values(quarantine_id=quarantine_id))
            return Result(item, Outcome.QUARANTINED, None)
        message_id, is_new = store_message(self.db, conn, parsed, {"source": ref.source_name, "folder": ref.folder})
        conn.execute(update(_loc).where(_loc.c.id == location_id).values(message_id=message_id))
        return Result(item, Outcome.STORED if is_new else Outcome.DUPLICATE, parsed.header_message_id)

    def _quarantine(self, conn: Connection, ref: FolderRef, rejected: Rejected) -> int:
        existing = conn.execute(
            select(_quar.c.id).where(_quar.c.raw_sha256 == rejected.raw_sha256, _quar.c.resolved_message_id.is_(None))
        ).scalar()
        if existing is not None:
            return existing
        return conn.execute(
            _quar.insert()
            .values(raw_sha256=rejected.raw_sha256, size=rejected.size, reason=rejected.reason,
                    source_name=ref.source_name, folder=ref.folder, created_at=utcnow())
            .returning(_quar.c.id)
        ).scalar_one()

    def _log(self, ref: FolderRef, result: Result) -> None:
        if self.on_result is not None:
            self.on_result(ref, result)
        item = result.item
        where = {"key": item.key} if item.key else {"uidvalidity": item.uidvalidity, "uid": item.uid}
        log.info(result.outcome.value, extra={"fields": {
            "source": ref.source_name, "folder": ref.folder, **where,
            "message_id": result.header_message_id, "outcome": result.outcome.value}})


def store_message(db: Database, conn: Connection, parsed: ParsedMail, origin: dict[str, str]) -> tuple[int, bool]:
    """Insert the message once (by content digest) with its attachments and `mail.received` event."""
    now = utcnow()
    row = {k: getattr(parsed, k) for k in (
        "raw_sha256", "size", "header_message_id", "in_reply_to", "references", "subject", "from_name",
        "from_addr", "to_addrs", "cc_addrs", "reply_to", "date", "text_body", "html_body", "parser", "defects")}
    message_id = conn.execute(
        db.insert_ignore(_msg).values(**row, ingested_at=now).returning(_msg.c.id)
    ).scalar()
    if message_id is None:
        return conn.execute(select(_msg.c.id).where(_msg.c.raw_sha256 == parsed.raw_sha256)).scalar_one(), False
    if parsed.attachments:
        conn.execute(_att.insert(), [
            {"message_id": message_id, "position": a.position, "filename": a.filename,
             "content_type": a.content_type[:255], "content_id": a.content_id, "size": a.size, "sha256": a.sha256}
            for a in parsed.attachments])
    conn.execute(_evt.insert().values(
        type="mail.received", occurred_at=parsed.date or now, recorded_at=now, message_id=message_id,
        data={**origin, "subject": parsed.subject, "from": parsed.from_addr,
              "message_id": parsed.header_message_id}))
    return message_id, True


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__

