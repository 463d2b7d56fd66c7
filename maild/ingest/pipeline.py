"""Parse, deduplicate and store a batch of fetched messages in one transaction, then ack.

Order of work for one batch: parse in worker processes (which also write blobs), sync blobs to
disk, then one transaction that records each location exactly once, stores each new message (or
quarantines it) with its `mail.received` event, and advances the folder's checkpoint under its
lease. Nothing is acknowledged before that commit; a crash anywhere re-delivers the batch and the
unique keys turn the re-delivery into no-ops.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from maild.ingest.parse import ParsedMail, Rejected, oversized
from maild.ingest.parser_pool import ParserPool
from maild.ingest.store import Fetched, Result, store_batch
from maild.store.blobs import BlobStore
from maild.store.checkpoints import FolderRef, LeaseLost, renew_lease
from maild.store.db import Database

log = logging.getLogger("maild.ingest")



@dataclass(frozen=True)
class Ack:
    """What to write to the checkpoint in the batch's transaction, under the folder lease."""

    owner: str
    ttl: float
    last_uid: int | None = None


class Batch(Protocol):
    """Fetched items and, once `results()` returns, what parsing made of each."""

    items: list[Fetched]

    def results(self) -> list[ParsedMail | Rejected]: ...


class KnownBatch:
    """Items whose outcome is known without parsing: oversized messages, streamed to the blob store unparsed."""

    def __init__(self, items: Sequence[Fetched], results: Sequence[ParsedMail | Rejected]) -> None:
        self.items = list(items)
        self._results = list(results)

    def results(self) -> list[ParsedMail | Rejected]:
        return self._results


class ParsedBatch:
    """A batch whose parsing was started in the parser pool; `results()` waits for it."""

    def __init__(self, items: Sequence[Fetched], pool: ParserPool) -> None:
        self.items = list(items)
        self._pool = pool
        self._submitted = pool.submit([item.raw for item in self.items])

    def results(self) -> list[ParsedMail | Rejected]:
        return self._pool.results([item.raw for item in self.items], self._submitted)


class Pipeline:
    def __init__(self, db: Database, pool: ParserPool) -> None:
        self.db = db
        self.pool = pool

    def start(self, items: Sequence[Fetched]) -> ParsedBatch:
        return ParsedBatch(items, self.pool)

    def keep_oversized(self, item: Fetched, chunks: Iterable[bytes]) -> Batch:
        """A message over `ingest.max_message_bytes`: its bytes go to the blob store as they arrive (never whole
        in memory) and it is quarantined as oversized, unparsed. (A server whose size was wrong and a message
        that turns out small: parsed as usual.)"""
        blobs = BlobStore(Path(self.pool.blob_dir))
        digest, size = blobs.put_stream(chunks)
        if size <= self.pool.max_bytes:
            return self.start([Fetched(blobs.get(digest), item.uid, item.uidvalidity, item.key)])
        return KnownBatch([item], [oversized(digest, size, self.pool.max_bytes)])

    def commit(self, ref: FolderRef, batch: Batch, ack: Ack | None = None) -> list[Result]:
        parsed = batch.results()
        BlobStore(Path(self.pool.blob_dir)).flush()
        try:
            with self.db.engine.begin() as conn:
                results = store_batch(self.db, conn, ref, batch.items, parsed)
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
                        results += store_batch(self.db, conn, ref, [item], [p])
                except SQLAlchemyError as exc:
                    rejected = Rejected(p.raw_sha256, p.size, f"could not store: {_short(exc)}")
                    with conn.begin_nested():
                        results += store_batch(self.db, conn, ref, [item], [rejected])
            self._ack(conn, ref, ack)
        return results

    def _ack(self, conn: Connection, ref: FolderRef, ack: Ack | None) -> None:
        if ack is None:
            return
        values = {} if ack.last_uid is None else {"last_uid": ack.last_uid}
        renew_lease(conn, ref, ack.owner, ack.ttl, **values)

    def _log(self, ref: FolderRef, result: Result) -> None:
        item = result.item
        where = {"key": item.key} if item.key else {"uidvalidity": item.uidvalidity, "uid": item.uid}
        log.info(result.outcome.value, extra={"fields": {
            "source": ref.source_name, "folder": ref.folder, **where,
            "message_id": result.header_message_id, "outcome": result.outcome.value}})



def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
