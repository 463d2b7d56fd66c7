"""The durable outbox: one row per mail to send, sent at most once per idempotency key.

Life of a row: queued -> sending (claimed) -> sent | retry | failed | ambiguous; retry -> sending ...; a
person can `retry` a failed/ambiguous/cancelled row, `mark_sent_by_person` an ambiguous one, or `cancel` a
queued/retry one. Every state change is a compare-and-set UPDATE (WHERE status = expected), so several senders
on one PostgreSQL never act on the same row twice; each outcome is also an `outbox_attempts` record
(attempts.py), kept across retries, and a failed one an event on the third party's timeline.

At most once: `data_started_at` and `data_connection` are set (and committed) just before that row's SMTP
DATA, one row per connection at a time. A claim that expired after that point may have been delivered, so
`recover_stale` makes it `ambiguous` (for a person) instead of sending it again; a claim that expired before
it is re-sent automatically.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, or_, select, update

from maild.clock import as_utc, utcnow
from maild.outbound import attempts
from maild.outbound.marks import REPLY_KEPT_IN, DataStartMarks
from maild.store.blobs import BlobStore
from maild.store.checkpoints import is_dead_local_process
from maild.store.db import Database
from maild.store.models import Event, OutboxMessage

T = OutboxMessage.__table__
AMBIGUOUS = ("interrupted after SMTP DATA began, no reply recorded: it may have been delivered; not re-sent "
             "automatically to avoid a duplicate (see `maild outbox show`)")
INTERRUPTED = AMBIGUOUS
STATUSES = ("queued", "sending", "sent", "retry", "failed", "ambiguous", "cancelled")


def enqueue(db: Database, blobs: BlobStore, *, key: str, raw: bytes, sender: str, recipients: list[str],
            subject: str, header_message_id: str, thirdparty_id: int | None = None, contact_id: int | None = None,
            template: str | None = None, tracking_token: str | None = None,
            transport: str = "default") -> tuple[int, bool]:
    """Store the rendered mail and queue it. The same key again returns (existing id, False)."""
    if not key:
        raise ValueError("an idempotency key is required")
    if not recipients:
        raise ValueError("at least one recipient is required")
    digest = blobs.put(raw)
    blobs.flush()  # the blob is on disk before the row that names it commits
    values: dict[str, Any] = {
        "idempotency_key": key, "status": "queued", "template": template, "thirdparty_id": thirdparty_id,
        "contact_id": contact_id, "sender": sender, "recipients": list(recipients), "subject": subject,
        "header_message_id": header_message_id, "tracking_token": tracking_token, "raw_sha256": digest,
        "size": len(raw), "transport": transport, "attempts": 0, "created_at": utcnow(), "sent_folder_done": False,
    }
    with db.engine.begin() as conn:
        inserted = conn.execute(db.insert_ignore(T).values(**values).returning(T.c.id)).scalar()
        if inserted is not None:
            return int(inserted), True
        existing = conn.execute(select(T.c.id).where(T.c.idempotency_key == key)).scalar_one()
        return int(existing), False


@dataclass(frozen=True)
class Entry:
    """One mail for `enqueue_many` (the keyword arguments of `enqueue`)."""

    key: str
    raw: bytes
    sender: str
    recipients: list[str]
    subject: str
    header_message_id: str
    thirdparty_id: int | None = None
    contact_id: int | None = None
    template: str | None = None
    tracking_token: str | None = None
    transport: str = "default"
    durable: bool = False  # `raw` is already in the blob store and synced to disk (see batch.PreparePool)


Also = Callable[[Connection, list[tuple[int, bool]]], None]


def enqueue_many(db: Database, blobs: BlobStore, entries: Sequence[Entry],
                 also: Also | None = None) -> list[tuple[int, bool]]:
    """`enqueue` for many mails: every blob written, one sync, then one transaction for all the rows.

    Returns (id, created) per entry, in order; a key already queued (or twice in `entries`) is not
    queued again. `also(conn, results)` runs in the same transaction (tracking ids, links), so the
    rows and what belongs to them commit together or not at all.
    """
    for entry in entries:
        if not entry.key:
            raise ValueError("an idempotency key is required")
        if not entry.recipients:
            raise ValueError("at least one recipient is required")
    if not entries:
        return []
    digests = [blobs.put(entry.raw) for entry in entries]
    if not all(entry.durable for entry in entries):
        blobs.flush()  # every blob is on disk before a row that names it commits
    now = utcnow()
    rows = [{"idempotency_key": e.key, "status": "queued", "template": e.template, "thirdparty_id": e.thirdparty_id,
             "contact_id": e.contact_id, "sender": e.sender, "recipients": list(e.recipients), "subject": e.subject,
             "header_message_id": e.header_message_id, "tracking_token": e.tracking_token, "raw_sha256": digest,
             "size": len(e.raw), "transport": e.transport, "attempts": 0, "created_at": now,
             "sent_folder_done": False} for e, digest in zip(entries, digests, strict=True)]
    with db.engine.begin() as conn:
        returned = conn.execute(db.insert_ignore(T).returning(T.c.idempotency_key, T.c.id), rows)
        inserted = {key: row_id for key, row_id in returned}
        missing = sorted({e.key for e in entries} - inserted.keys())
        existing: dict[str, int] = {}
        if missing:
            found = conn.execute(select(T.c.idempotency_key, T.c.id).where(T.c.idempotency_key.in_(missing)))
            existing = {key: row_id for key, row_id in found}
        results: list[tuple[int, bool]] = []
        first: set[str] = set()
        for e in entries:
            if e.key in inserted and e.key not in first:
                first.add(e.key)
                results.append((int(inserted[e.key]), True))
            else:
                results.append((int(inserted.get(e.key) or existing[e.key]), False))
        if also is not None:
            also(conn, results)
    return results


def get(db: Database, outbox_id: int) -> OutboxMessage | None:
    with db.session() as session:
        return session.get(OutboxMessage, outbox_id)


def by_key(db: Database, key: str) -> OutboxMessage | None:
    with db.session() as session:
        return session.exec(select(OutboxMessage).where(T.c.idempotency_key == key)).scalars().first()


def listing(db: Database, status: str | None = None, limit: int | None = None) -> list[OutboxMessage]:
    query = select(OutboxMessage).order_by(T.c.id)
    if status:
        query = query.where(T.c.status == status)
    if limit:
        query = query.limit(limit)
    with db.session() as session:
        return list(session.exec(query).scalars())


def _due(now: datetime) -> Any:
    return or_(T.c.status == "queued",
               and_(T.c.status == "retry", or_(T.c.next_attempt_at.is_(None), T.c.next_attempt_at <= now)))


Claimed = Callable[[Connection, list[int]], None]


def claim(db: Database, owner: str, limit: int, lease_seconds: float,
          also: Claimed | None = None) -> list[OutboxMessage]:
    """Move up to `limit` due rows to `sending` for `owner`, in one statement; rows another sender holds are
    skipped (PostgreSQL: SKIP LOCKED, and the outer WHERE re-checks each row after any wait). `also(conn, ids)`
    runs in the same transaction when rows were claimed (an audit entry)."""
    now = utcnow()
    until = now + timedelta(seconds=lease_seconds)
    due = select(T.c.id).where(_due(now)).order_by(T.c.id).limit(limit)
    if not db.is_sqlite:
        due = due.with_for_update(skip_locked=True)
    picked = due.cte("picked")  # evaluated once: an IN (subquery) may be re-run per row, picking more
    with db.engine.begin() as conn:
        if db.is_sqlite:  # pysqlite opens no transaction before a statement starting with WITH: `also` must be in one
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        claimed = list(conn.execute(update(T).where(T.c.id.in_(select(picked.c.id)), _due(now))
                                    .values(status="sending", claimed_by=owner, claimed_until=until)
                                    .returning(T.c.id)).scalars())
        if claimed and also is not None:
            also(conn, sorted(claimed))
    if not claimed:
        return []
    with db.session() as session:
        rows = session.exec(select(OutboxMessage).where(T.c.id.in_(claimed)).order_by(T.c.id)).scalars()
        return list(rows)


def recover_stale(db: Database, now: datetime | None = None, *, owner: str | None = None) -> dict[str, int]:
    """Claims that expired (or whose holder died on this host), or, given `owner`, every claim of that owner at once
    (its pass ended: nothing of it is in flight): sent if the server's 2xx reply was saved (marks.py), retry if
    DATA never began, else ambiguous (DATA began, no reply known: for a person). An ambiguous row whose 2xx reply
    was saved after it was made ambiguous (its sender got the reply during a long outage) is booked as sent."""
    now = now or utcnow()
    held = T.c.status == "sending" if owner is None else and_(T.c.status == "sending", T.c.claimed_by == owner)
    replied_late = and_(T.c.status == "ambiguous", T.c.smtp_reply.is_not(None))
    with db.engine.connect() as conn:
        rows = conn.execute(select(T.c.id, T.c.status, T.c.claimed_by, T.c.claimed_until, T.c.data_started_at,
                                   T.c.smtp_reply).where(or_(held, replied_late))).all()
    counts = {"sent": 0, "retry": 0, "ambiguous": 0}
    for row_id, status, holder, until, started, reply in rows:
        expired = (owner is not None or until is None or as_utc(until) <= now
                   or (holder is not None and is_dead_local_process(holder)))
        if status == "sending" and not expired:
            continue
        if started is not None and attempts.reply_code(reply) in range(200, 300):
            with db.engine.begin() as conn:  # delivered; only the booking was pending (a crash, an outage)
                counts["sent"] += len(_record_sent(conn, [(row_id, reply)], detail="delivery booked at recovery"))
            continue
        if status != "sending":
            continue
        guard = T.c.claimed_by.is_(None) if holder is None else T.c.claimed_by == holder
        if started is None:
            values: dict[str, Any] = {"status": "retry", "next_attempt_at": now, "claimed_by": None,
                                      "claimed_until": None, "last_error": "claim expired before SMTP DATA"}
        else:
            values = {"status": "ambiguous", "claimed_by": None, "claimed_until": None, "last_error": AMBIGUOUS}
        with db.engine.begin() as conn:
            changed = conn.execute(update(T).where(T.c.id == row_id, T.c.status == "sending", guard)
                                   .values(**values).returning(*attempts.COLUMNS)).all()
            outcome = str(values["status"])
            attempts.record(conn, changed, outcome, detail=str(values["last_error"]), at=now)
            for row in changed if outcome == "ambiguous" else ():
                attempts.failure_event(conn, row, "ambiguous", AMBIGUOUS)
            counts[outcome] += len(changed)
    return counts


def settle_claims(db: Database, owner: str, replies: Sequence[tuple[int, str]] = ()) -> dict[str, int]:
    """After `owner`'s pass failed (the database went away): save the replies the database did not take, then
    recover the owner's claims now, as `recover_stale` does after a kill -9 once the claims expire."""
    if replies:
        with db.engine.begin() as conn:
            # or_ of equalities, not IN: an expanding IN cannot go into an executemany
            kept = or_(*(T.c.status == status for status in REPLY_KEPT_IN))
            conn.execute(update(T).where(T.c.id == bindparam("row_id"), kept)
                         .values(smtp_reply=bindparam("reply")),
                         [{"row_id": row_id, "reply": reply} for row_id, reply in replies])
    return recover_stale(db, owner=owner)


class ClaimLost(Exception):
    """The row is no longer `sending` under this owner (its claim expired and was recovered): do not send."""


def _mine(outbox_id: int, owner: str | None) -> Any:
    """The fence for a sender's updates: the row is still `sending` (and, given an owner, still ours)."""
    guard = and_(T.c.id == outbox_id, T.c.status == "sending")
    return guard if owner is None else and_(guard, T.c.claimed_by == owner)


def mark_data_started(db: Database, outbox_id: int, owner: str, connection: str,
                      replies: Sequence[tuple[int, str]] = ()) -> None:
    """Commit "DATA begins now on `connection`" for one row (and the SMTP replies of earlier deliveries, see
    marks.py); raises ClaimLost if the row is no longer ours. A sender's pass uses one DataStartMarks."""
    marks = DataStartMarks(db)
    try:
        marked = marks.mark(outbox_id, owner, connection, replies)
    finally:
        marks.close()
    if not marked:
        raise ClaimLost(f"outbox row {outbox_id} is no longer claimed by {owner}")


def mark_sent_many(db: Database, replies: Sequence[tuple[int, str]]) -> list[int]:
    """`mark_sent` for many (row id, SMTP reply) in one transaction; returns the ids newly marked sent."""
    if not replies:
        return []
    with db.engine.begin() as conn:
        return _record_sent(conn, replies)


_SET_REPLY = update(T).where(T.c.id == bindparam("row_id")).values(smtp_reply=bindparam("reply"))


def _record_sent(conn: Connection, replies: Sequence[tuple[int, str]], detail: str | None = None,
                 by_person: bool = False) -> list[int]:
    """The delivered rows not yet `sent` become sent (the server's 250 is the truth), one event and one
    attempt record each."""
    if not replies:
        return []
    now = utcnow()
    by_id = dict(replies)
    done = conn.execute(
        update(T).where(T.c.id.in_(list(by_id)), T.c.status != "sent")
        .values(status="sent", sent_at=now, last_error=None, claimed_by=None, claimed_until=None,
                next_attempt_at=None)
        .returning(*attempts.COLUMNS)).all()
    if not done:
        return []
    done.sort(key=lambda r: r.id)
    conn.execute(_SET_REPLY, [{"row_id": row.id, "reply": by_id[row.id]} for row in done])
    attempts.record(conn, done, "sent", replies=by_id, detail=detail, at=now)
    conn.execute(Event.__table__.insert(), [
        {"type": "mail.sent", "occurred_at": now, "recorded_at": now, "thirdparty_id": row.thirdparty_id,
         "message_id": None, "data": {"outbox_id": row.id, "key": row.idempotency_key, "to": list(row.recipients),
                                      "subject": row.subject, "message_id": row.header_message_id,
                                      **({"marked_by": "person"} if by_person else {})}}
        for row in done])
    return [row.id for row in done]


def mark_sent(db: Database, outbox_id: int, smtp_reply: str) -> bool:
    """Record the delivery (even if the claim was meanwhile recovered: the server's 250 is the truth).

    Appends one `mail.sent` event; returns False if the row was already sent (no second event).
    """
    return bool(mark_sent_many(db, [(outbox_id, smtp_reply)]))


def backoff_delay(attempts: int, *, base: float = 60.0, max_delay: float = 3600.0) -> float:
    """Capped exponential backoff with full jitter in the upper half: attempt 1 ~ base, doubling."""
    ceiling = min(max_delay, base * (2 ** max(0, attempts - 1)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def mark_retry(db: Database, outbox_id: int, error: str, delay: float | None = None, *, max_attempts: int = 8,
               max_delay: float = 3600.0, owner: str | None = None, reply: str | None = None) -> str:
    """A temporary failure: attempts+1 and wait (backoff unless `delay`); `failed` after max_attempts.

    Returns the new status ("retry" or "failed"), or "" if the row was no longer ours to update.
    """
    with db.engine.begin() as conn:
        row = conn.execute(select(T.c.attempts, *attempts.COLUMNS).where(_mine(outbox_id, owner))).first()
        if row is None:
            return ""
        count = row.attempts + 1
        common = {"attempts": count, "claimed_by": None, "claimed_until": None, "data_started_at": None,
                  "data_connection": None}
        if count >= max_attempts:
            values: dict[str, Any] = {**common, "status": "failed",
                                      "last_error": f"gave up after {count} attempts: {error}"}
        else:
            wait = backoff_delay(count, max_delay=max_delay) if delay is None else delay
            values = {**common, "status": "retry", "last_error": error,
                      "next_attempt_at": utcnow() + timedelta(seconds=wait)}
        result = conn.execute(update(T).where(_mine(outbox_id, owner)).values(**values))
        if result.rowcount != 1:
            return ""
        status = str(values["status"])
        attempts.record(conn, [row], status, reply=reply, detail=error)
        if status == "failed":
            attempts.failure_event(conn, row, "failed", str(values["last_error"]), reply)
        return status


def mark_failed(db: Database, outbox_id: int, error: str, smtp_reply: str | None = None,
                owner: str | None = None, *, refused: bool | None = None) -> bool:
    """A final failure: `refused` (default: when there is an SMTP reply) is the server's 5xx, else not sendable."""
    refused = smtp_reply is not None if refused is None else refused
    return _finish(db, outbox_id, owner, "refused" if refused else "failed", error, smtp_reply)


def mark_ambiguous(db: Database, outbox_id: int, reason: str, owner: str | None = None) -> bool:
    """DATA began and no reply came (dropped, timed out): maybe delivered; it waits for a person."""
    return _finish(db, outbox_id, owner, "ambiguous", f"{AMBIGUOUS} ({reason})", None)


def _finish(db: Database, outbox_id: int, owner: str | None, outcome: str, error: str, reply: str | None) -> bool:
    status = "ambiguous" if outcome == "ambiguous" else "failed"
    with db.engine.begin() as conn:
        changed = conn.execute(update(T).where(_mine(outbox_id, owner)).values(
            status=status, last_error=error, smtp_reply=reply, attempts=T.c.attempts + 1,
            claimed_by=None, claimed_until=None).returning(*attempts.COLUMNS)).all()
        attempts.record(conn, changed, outcome, reply=reply, detail=error)
        for row in changed:
            attempts.failure_event(conn, row, outcome, error, reply)
        return len(changed) == 1


def mark_sent_folder_done(db: Database, outbox_id: int) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(T).where(T.c.id == outbox_id).values(sent_folder_done=True))


def pending_sent_folder(db: Database, limit: int = 50) -> list[OutboxMessage]:
    query = (select(OutboxMessage).where(T.c.status == "sent", T.c.sent_folder_done.is_(False))
             .order_by(T.c.id).limit(limit))
    with db.session() as session:
        return list(session.exec(query).scalars())


def retry(db: Database, outbox_id: int) -> bool:
    """A person's decision: send a failed, ambiguous or cancelled mail again (now); its story is kept."""
    with db.engine.begin() as conn:
        return retry_in(conn, outbox_id)


def retry_in(conn: Connection, outbox_id: int) -> bool:
    """`retry` in the caller's transaction (the web app audits in the same one)."""
    changed = conn.execute(update(T).where(T.c.id == outbox_id, T.c.status.in_(("failed", "ambiguous", "cancelled")))
                           .values(status="queued", data_started_at=None, data_connection=None, smtp_reply=None,
                                   next_attempt_at=None, claimed_by=None, claimed_until=None, attempts=0)
                           .returning(*attempts.COLUMNS)).all()
    attempts.record(conn, changed, "requeued", detail="queued again by a person (outbox retry)")
    return len(changed) == 1


def mark_sent_by_person(db: Database, outbox_id: int) -> bool:
    """A person's decision: an ambiguous mail did arrive; record it as sent (one `mail.sent` event)."""
    with db.engine.begin() as conn:
        return mark_sent_by_person_in(conn, outbox_id)


def mark_sent_by_person_in(conn: Connection, outbox_id: int) -> bool:
    """`mark_sent_by_person` in the caller's transaction."""
    if conn.execute(select(T.c.status).where(T.c.id == outbox_id)).scalar() != "ambiguous":
        return False
    return bool(_record_sent(conn, [(outbox_id, "marked sent by a person")],
                             detail="marked sent by a person (outbox mark-sent)", by_person=True))


def cancel(db: Database, outbox_id: int) -> bool:
    """Withdraw a mail that is not being sent (queued or waiting for a retry)."""
    with db.engine.begin() as conn:
        return cancel_in(conn, outbox_id)


def cancel_in(conn: Connection, outbox_id: int) -> bool:
    """`cancel` in the caller's transaction."""
    changed = conn.execute(update(T).where(T.c.id == outbox_id, T.c.status.in_(("queued", "retry")))
                           .values(status="cancelled", next_attempt_at=None)
                           .returning(*attempts.COLUMNS)).all()
    attempts.record(conn, changed, "cancelled", detail="withdrawn by a person (outbox cancel)")
    return len(changed) == 1
