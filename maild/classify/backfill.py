"""Classify stored mail that has no kind (stored before classification existed) with the same detector chain, from
its raw bytes in the blob store: newest first, in batches, each batch written in one short transaction.

Idempotent and safe beside a running daemon: a row is written only while its kind is still empty, so two runs (the
daemon's background worker, `maild classify --backfill`) never classify a message twice, and a run stopped anywhere
goes on where the kinds are still empty. Missing or damaged raw bytes give kind `unknown` with the reason. What a
bounce classified this late would have set off at ingest (bounce records, address health, the outbox row's status,
`mail.bounced`) does not follow: docs/machine-mail.md, "Mail stored before classification".
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, exists, func, select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from maild.classify.base import UNKNOWN, Classification, Settings
from maild.classify.chain import classify_bytes
from maild.store.blobs import BlobStore, sha256_hex
from maild.store.db import Database
from maild.store.models import Message

log = logging.getLogger("maild.classify")
_m = Message.__table__
BACKFILLED = "backfilled"  # set in `messages.machine` of mail classified after it was stored
DEFAULT_BATCH = 500


class BlobStoreMissing(Exception):
    """The blob store's folder is not there: a wrong `storage.blob_dir`, not bad mail. Nothing is classified."""


@dataclass
class Batch:
    """What one batch did: rows looked at, rows written (the others were classified meanwhile), kinds written."""

    rows: int = 0
    written: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    lowest_id: int | None = None  # the next batch looks below this id

    def add(self, other: Batch) -> None:
        self.rows += other.rows
        self.written += other.written
        self.kinds.update(other.kinds)
        self.lowest_id = other.lowest_id

    def describe(self) -> str:
        kinds = ", ".join(f"{kind} {count}" for kind, count in self.kinds.most_common())
        return f"{self.written} classified" + (f" ({kinds})" if kinds else "")


def unclassified(conn: Connection) -> int:
    """How many stored messages have no kind."""
    return int(conn.execute(select(func.count()).select_from(_m).where(_m.c.kind.is_(None))).scalar_one())


def any_unclassified(conn: Connection) -> bool:
    return bool(conn.execute(select(exists().where(_m.c.kind.is_(None)))).scalar())


def classify_stored(blobs: BlobStore, digest: str, settings: Settings) -> Classification:
    """The chain's verdict on one stored message's raw bytes; never raises (bad bytes: kind `unknown`)."""
    try:
        raw = blobs.get(digest)
    except FileNotFoundError:
        return Classification(UNKNOWN, [f"backfill: the raw bytes are missing from the blob store ({digest})"])
    except (OSError, ValueError) as exc:  # EACCES, EIO, a digest that names no file
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return Classification(UNKNOWN, [f"backfill: the raw bytes cannot be read: {reason}"[:500]])
    if sha256_hex(raw) != digest:
        return Classification(UNKNOWN, ["backfill: the raw bytes are damaged (their sha256 is not the message's)"])
    return classify_bytes(raw, settings)


def verdict_now(blobs: BlobStore, settings: Settings, message: Any) -> Classification | None:
    """The chain's verdict on a stored message without a kind, from its raw bytes; None when the blob store is not
    there at all (a wrong storage.blob_dir is no verdict on the mail: it stays a person's, and the backfill says
    why)."""
    if not blobs.root.is_dir():
        log.warning("message %s has no kind and the blob store %s is not there: counted as a person's",
                    message.id, blobs.root)
        return None
    return classify_stored(blobs, message.raw_sha256, settings)


def classify_now(conn: Connection, blobs: BlobStore, settings: Settings, message: Any) -> Any:
    """A message row without a kind, classified now by the chain (`verdict_now`), its kind stored in `conn`'s
    transaction, and the row read again; the row as it is when it has a kind or there is no verdict."""
    found = verdict_now(blobs, settings, message) if message.kind is None else None
    if found is None:
        return message
    store(conn, {message.id: found})
    return conn.execute(select(_m).where(_m.c.id == message.id)).one()


def record(found: Classification) -> dict[str, Any] | None:
    """`messages.machine` of a message classified after it was stored (marked so, but for plain human mail)."""
    stored = found.stored()
    return None if stored is None else {**stored, BACKFILLED: True}


def store(conn: Connection, found: Mapping[int, Classification]) -> set[int]:
    """Write the kinds of the messages that still have none (in `conn`'s transaction); the ids written."""
    written: set[int] = set()
    for message_id, classification in found.items():
        result = conn.execute(update(_m).where(_m.c.id == message_id, _m.c.kind.is_(None))
                              .values(kind=classification.kind, machine=record(classification)))
        if result.rowcount:
            written.add(message_id)
    return written


def classify_rows(db: Database, blobs: BlobStore, settings: Settings, size: int,
                  below: int | None = None) -> Batch:
    """Classify up to `size` messages without a kind (newest first; only ids below `below` when given)."""
    query = select(_m.c.id, _m.c.raw_sha256).where(_m.c.kind.is_(None))
    if below is not None:
        query = query.where(_m.c.id < below)
    with db.engine.connect() as conn:
        rows = conn.execute(query.order_by(_m.c.id.desc()).limit(size)).all()
    if not rows:
        return Batch()
    if not blobs.root.is_dir():
        raise BlobStoreMissing(f"the blob store {blobs.root} is not there (storage.blob_dir): nothing classified")
    found = {int(row.id): classify_stored(blobs, row.raw_sha256, settings) for row in rows}
    written = _store_batch(db, found)
    return Batch(rows=len(rows), written=len(written), kinds=Counter(found[i].kind for i in written),
                 lowest_id=int(rows[-1].id))


def _store_batch(db: Database, found: dict[int, Classification]) -> set[int]:
    """One transaction for the batch; a row the database refuses (a value it cannot take) is named, stored as
    `unknown` with the database's reason, and the others are written one by one."""
    try:
        with db.engine.begin() as conn:
            return store(conn, found)
    except OperationalError:
        raise  # the database is away or busy: the batch is tried again, nothing is the mail's fault
    except DBAPIError as exc:
        log.warning("the database refused a batch of classifications (%s); writing them one by one",
                    type(exc.orig).__name__)
    written: set[int] = set()
    for message_id, classification in found.items():
        try:
            with db.engine.begin() as conn:
                written |= store(conn, {message_id: classification})
        except OperationalError:
            raise
        except DBAPIError as exc:
            refused = Classification(UNKNOWN, [f"backfill: the database refused {classification.kind}: "
                                               f"{type(exc.orig).__name__}: {exc.orig}"[:500]])
            with db.engine.begin() as conn:
                written |= store(conn, {message_id: refused})
    return written


def backfill(db: Database, blobs: BlobStore, settings: Settings, *, batch: int = DEFAULT_BATCH,
             limit: int | None = None, progress: Callable[[Batch], None] | None = None,
             stopped: Callable[[], bool] = lambda: False) -> Batch:
    """Classify every message without a kind (at most `limit`), `batch` per transaction; `progress` after each."""
    total = Batch()
    below: int | None = None
    while limit is None or total.rows < limit:
        size = batch if limit is None else min(batch, limit - total.rows)
        done = classify_rows(db, blobs, settings, size, below)
        if not done.rows:
            break
        total.add(done)
        below = done.lowest_id
        if progress is not None:
            progress(total)
        if stopped():
            break
    return total
