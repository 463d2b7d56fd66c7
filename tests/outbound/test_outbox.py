from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import func, select, update

from maild.clock import as_utc, utcnow
from maild.outbound import outbox
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.store.models import OutboxMessage
from tests.outbound.helpers import make_raw, queue

T = OutboxMessage.__table__


def count(db: Database) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(T)).scalar_one()


def test_enqueue_is_idempotent(db: Database, blobs: BlobStore) -> None:
    raw = make_raw("k1")
    args = {"key": "invoice-7/reminder-1", "raw": raw, "sender": "sales@example.test",
            "recipients": ["anna@customer.example"], "subject": "offer", "header_message_id": "<m@example.test>"}
    first = outbox.enqueue(db, blobs, **args)
    second = outbox.enqueue(db, blobs, **args)
    assert first[1] is True and second == (first[0], False)
    assert count(db) == 1
    row = outbox.get(db, first[0])
    assert row is not None and row.status == "queued" and blobs.get(row.raw_sha256) == raw and row.size == len(raw)


def test_claim_race_never_hands_a_row_to_two_claimers(db: Database, blobs: BlobStore) -> None:
    ids = {queue(db, blobs, f"k{i}") for i in range(40)}
    got: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    barrier = threading.Barrier(len(got))

    def claimer(name: str) -> None:
        barrier.wait()
        while True:
            rows = outbox.claim(db, name, 3, 60)
            if not rows:
                return
            got[name].extend(r.id for r in rows)

    threads = [threading.Thread(target=claimer, args=(name,)) for name in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [i for ids_ in got.values() for i in ids_]
    assert sorted(claimed) == sorted(ids)  # every row once, none twice
    with db.engine.connect() as conn:
        owners = dict(conn.execute(select(T.c.id, T.c.claimed_by)).all())
    for name, ids_ in got.items():
        assert all(owners[i] == name for i in ids_)


def test_claim_takes_due_retries_only(db: Database, blobs: BlobStore) -> None:
    later, due = queue(db, blobs, "later"), queue(db, blobs, "due")
    with db.engine.begin() as conn:
        conn.execute(update(T).where(T.c.id == later).values(status="retry",
                                                              next_attempt_at=utcnow() + timedelta(hours=1)))
        conn.execute(update(T).where(T.c.id == due).values(status="retry",
                                                            next_attempt_at=utcnow() - timedelta(seconds=1)))
    assert [r.id for r in outbox.claim(db, "me", 10, 60)] == [due]


def test_recover_stale(db: Database, blobs: BlobStore) -> None:
    before, after, live = queue(db, blobs, "before"), queue(db, blobs, "after"), queue(db, blobs, "live")
    outbox.claim(db, "gone-host:1:x", 10, 60)
    outbox.mark_data_started(db, after, "gone-host:1:x", "10.0.0.1:40000 -> smtp:25")
    with db.engine.begin() as conn:
        conn.execute(update(T).where(T.c.id.in_([before, after])).values(claimed_until=utcnow() - timedelta(seconds=1)))
    assert outbox.recover_stale(db) == {"sent": 0, "retry": 1, "ambiguous": 1}
    assert outbox.get(db, before).status == "retry"
    failed = outbox.get(db, after)
    assert failed.status == "ambiguous" and failed.last_error == outbox.AMBIGUOUS
    assert outbox.get(db, live).status == "sending"
    # A person checks and decides to send it again.
    assert outbox.retry(db, after)
    row = outbox.get(db, after)
    assert row.status == "queued" and row.data_started_at is None
    assert not outbox.retry(db, live)


def test_mark_retry_backs_off_then_fails(db: Database, blobs: BlobStore) -> None:
    row_id = queue(db, blobs, "k")
    for attempt in (1, 2):
        outbox.claim(db, "me", 1, 60)
        assert outbox.mark_retry(db, row_id, "451 later", max_attempts=3, max_delay=100) == "retry"
        row = outbox.get(db, row_id)
        assert row.attempts == attempt and row.last_error == "451 later"
        wait = (as_utc(row.next_attempt_at) - utcnow()).total_seconds()
        assert 0 < wait <= 100
        with db.engine.begin() as conn:
            conn.execute(update(T).where(T.c.id == row_id).values(next_attempt_at=utcnow()))
    outbox.claim(db, "me", 1, 60)
    assert outbox.mark_retry(db, row_id, "451 later", max_attempts=3) == "failed"
    row = outbox.get(db, row_id)
    assert row.status == "failed" and row.attempts == 3 and "gave up after 3 attempts" in row.last_error


def test_backoff_is_capped_with_jitter() -> None:
    delays = [outbox.backoff_delay(n, base=60, max_delay=3600) for n in (1, 2, 3, 10, 30)]
    assert 30 <= delays[0] <= 60 and 60 <= delays[1] <= 120 and 120 <= delays[2] <= 240
    assert all(1800 <= d <= 3600 for d in delays[3:])


def test_cancel_only_queued_or_retry(db: Database, blobs: BlobStore) -> None:
    queued, sending = queue(db, blobs, "a"), queue(db, blobs, "b")
    with db.engine.begin() as conn:
        conn.execute(update(T).where(T.c.id == sending).values(status="sending"))
    assert outbox.cancel(db, queued) and outbox.get(db, queued).status == "cancelled"
    assert not outbox.cancel(db, sending)
    assert outbox.retry(db, queued) and outbox.get(db, queued).status == "queued"
