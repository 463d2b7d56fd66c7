from __future__ import annotations

import asyncio
import email
from pathlib import Path

from sqlalchemy import select

from maild.clock import as_utc, utcnow
from maild.outbound import outbox
from maild.outbound.sender import OutboxSender
from maild.outbound.smtp import Delivered, FileTransport, PermFail, TempFail, Transport
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.store.models import Event
from tests.outbound.conftest import Sink
from tests.outbound.helpers import make_raw, queue


def send_all(db: Database, blobs: BlobStore, transport: Transport, limit: int = 100) -> dict[str, int]:
    sender = OutboxSender(db, blobs, transport, "test-owner", max_attempts=5)

    async def go() -> dict[str, int]:
        try:
            return await sender.send_due(limit)
        finally:
            await transport.close()

    return asyncio.run(go())


def events(db: Database) -> list[Event]:
    with db.session() as session:
        return list(session.exec(select(Event).where(Event.type == "mail.sent")).scalars())


def test_delivered_marks_sent_and_appends_the_event(db: Database, blobs: BlobStore, smtp_sink: Sink) -> None:
    ids = [queue(db, blobs, f"k{i}", to=f"p{i}@customer{i % 2}.example") for i in range(5)]
    transport = smtp_sink.transport(max_connections=2)
    assert send_all(db, blobs, transport) == {"sent": 5, "retry": 0, "failed": 0}
    assert sorted(r.subject for r in smtp_sink.handler.received) == [f"offer k{i}" for i in range(5)]
    assert smtp_sink.handler.connections <= 2  # connections are reused across messages
    for row_id in ids:
        row = outbox.get(db, row_id)
        assert row.status == "sent" and row.smtp_reply.startswith("250") and row.sent_at is not None
        assert row.data_started_at is not None and row.claimed_by is None
    (first, *_) = sorted(events(db), key=lambda e: e.data["outbox_id"])
    assert len(events(db)) == 5
    assert first.message_id is None
    assert first.data == {"outbox_id": ids[0], "key": "k0", "to": ["p0@customer0.example"], "subject": "offer k0",
                          "message_id": "<maild.test0.k0@example.test>"}
    assert send_all(db, blobs, smtp_sink.transport()) == {"sent": 0, "retry": 0, "failed": 0}
    assert len(smtp_sink.handler.received) == 5


def test_event_carries_the_third_party(db: Database, blobs: BlobStore, tmp_path: Path) -> None:
    from maild.store.models import ThirdParty

    with db.session() as session:
        party = ThirdParty(name="ACME")
        session.add(party)
        session.flush()
        party_id = party.id
    queue(db, blobs, "tp", thirdparty_id=party_id)
    send_all(db, blobs, FileTransport(tmp_path / "out"))
    (event,) = events(db)
    assert event.thirdparty_id == party_id


def test_4xx_goes_to_retry_with_a_next_attempt(db: Database, blobs: BlobStore, smtp_sink: Sink) -> None:
    smtp_sink.handler.rcpt_reply = "450 4.2.1 mailbox busy, try later"
    row_id = queue(db, blobs, "k")
    assert send_all(db, blobs, smtp_sink.transport()) == {"sent": 0, "retry": 1, "failed": 0}
    row = outbox.get(db, row_id)
    assert row.status == "retry" and row.attempts == 1 and "450 4.2.1 mailbox busy" in row.last_error
    assert as_utc(row.next_attempt_at) > utcnow() and row.data_started_at is None
    assert not smtp_sink.handler.received


def test_5xx_on_rcpt_fails_with_the_reply(db: Database, blobs: BlobStore, smtp_sink: Sink) -> None:
    smtp_sink.handler.rcpt_reply = "550 5.1.1 no such user"
    row_id = queue(db, blobs, "k")
    assert send_all(db, blobs, smtp_sink.transport()) == {"sent": 0, "retry": 0, "failed": 1}
    row = outbox.get(db, row_id)
    assert row.status == "failed" and row.smtp_reply == "550 5.1.1 no such user"
    assert "550 5.1.1 no such user" in row.last_error and row.data_started_at is None


def test_5xx_on_data_fails_with_the_reply(db: Database, blobs: BlobStore, smtp_sink: Sink) -> None:
    smtp_sink.handler.data_reply = "554 5.7.1 message rejected as spam"
    row_id = queue(db, blobs, "k")
    assert send_all(db, blobs, smtp_sink.transport()) == {"sent": 0, "retry": 0, "failed": 1}
    row = outbox.get(db, row_id)
    assert row.status == "failed" and row.smtp_reply == "554 5.7.1 message rejected as spam"


def test_dropped_mid_data_is_failed_visibly_and_never_resent(db: Database, blobs: BlobStore,
                                                             smtp_sink: Sink) -> None:
    smtp_sink.handler.drop_in_data = True
    row_id = queue(db, blobs, "k")
    assert send_all(db, blobs, smtp_sink.transport()) == {"sent": 0, "retry": 0, "failed": 1}
    row = outbox.get(db, row_id)
    assert row.status == "ambiguous" and row.last_error.startswith(outbox.AMBIGUOUS)
    assert row.sent_at is None and not events(db)
    smtp_sink.handler.drop_in_data = False
    assert outbox.recover_stale(db) == {"sent": 0, "retry": 0, "ambiguous": 0}
    assert send_all(db, blobs, smtp_sink.transport()) == {"sent": 0, "retry": 0, "failed": 0}
    assert not smtp_sink.handler.received
    # Only a person re-sends it.
    assert outbox.retry(db, row_id)
    assert send_all(db, blobs, smtp_sink.transport())["sent"] == 1


def test_transport_reports_timeouts_and_drops_as_tempfail(smtp_sink: Sink) -> None:
    raw = make_raw("t")
    started: list[int] = []

    async def on_data_started(outbox_id: int, _connection: str) -> None:
        started.append(outbox_id)

    async def go(**fault: object) -> object:
        for name, value in fault.items():
            setattr(smtp_sink.handler, name, value)
        transport = smtp_sink.transport(timeout=0.5)
        try:
            return await transport.send(1, "sales@example.test", ["a@customer.example"], raw, on_data_started)
        finally:
            await transport.close()
            for name in fault:
                setattr(smtp_sink.handler, name, type(getattr(smtp_sink.handler, name))())

    result = asyncio.run(go(delay_rcpt=2.0))
    assert isinstance(result, TempFail) and "timeout" in result.reason and started == []
    result = asyncio.run(go(delay_data=2.0))
    assert isinstance(result, TempFail) and "DATA" in result.reason and started == [1]
    result = asyncio.run(go(drop_in_data=True))
    assert isinstance(result, TempFail) and "may have been delivered" in result.reason
    result = asyncio.run(go(rcpt_reply="550 5.1.1 unknown"))
    assert result == PermFail("refused at RCPT TO:<a@customer.example>: 550 5.1.1 unknown", "550 5.1.1 unknown")
    result = asyncio.run(go())
    assert isinstance(result, Delivered) and result.reply.startswith("250")


def test_timeout_before_data_retries_after_data_fails(db: Database, blobs: BlobStore, smtp_sink: Sink) -> None:
    before, after = queue(db, blobs, "before"), queue(db, blobs, "after")
    smtp_sink.handler.delay_rcpt = 2.0
    assert send_all(db, blobs, smtp_sink.transport(timeout=0.5), limit=1)["retry"] == 1
    assert outbox.get(db, before).status == "retry"
    smtp_sink.handler.delay_rcpt = 0.0
    smtp_sink.handler.delay_data = 2.0
    assert send_all(db, blobs, smtp_sink.transport(timeout=0.5), limit=1)["failed"] == 1
    row = outbox.get(db, after)
    assert row.status == "ambiguous" and row.last_error.startswith(outbox.AMBIGUOUS)


def test_dropped_connection_is_reconnected(db: Database, blobs: BlobStore, smtp_sink: Sink) -> None:
    transport = smtp_sink.transport(max_connections=1)
    sender = OutboxSender(db, blobs, transport, "me")
    queue(db, blobs, "one")

    async def go() -> None:
        assert (await sender.send_due(10))["sent"] == 1
        slots = transport._queue()
        client = slots.get_nowait()
        client.close()  # the server (or the network) dropped the idle connection
        slots.put_nowait(client)
        queue(db, blobs, "two")
        assert (await sender.send_due(10))["sent"] == 1
        await transport.close()

    asyncio.run(go())
    assert [r.subject for r in smtp_sink.handler.received] == ["offer one", "offer two"]


def test_per_domain_rate_limit(smtp_sink: Sink) -> None:
    from maild.outbound.smtp import DomainRateLimiter

    async def go() -> float:
        limiter = DomainRateLimiter(2, window=0.5)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(3):
            await limiter.acquire({"customer.example"})
        await limiter.acquire({"other.example"})
        return loop.time() - start

    assert 0.4 <= asyncio.run(go()) < 2


def test_file_transport_writes_the_eml(db: Database, blobs: BlobStore, tmp_path: Path) -> None:
    row_id = queue(db, blobs, "f1")
    assert send_all(db, blobs, FileTransport(tmp_path / "sent-mail")) == {"sent": 1, "retry": 0, "failed": 0}
    (path,) = (tmp_path / "sent-mail").iterdir()
    assert path.name == f"{row_id}-maild.test0.f1@example.test.eml"
    assert path.read_bytes() == blobs.get(outbox.get(db, row_id).raw_sha256)
    assert email.message_from_bytes(path.read_bytes())["Subject"] == "offer f1"
    assert outbox.get(db, row_id).status == "sent"


def test_a_sender_whose_claim_was_taken_over_does_not_send(db: Database, blobs: BlobStore, smtp_sink: Sink) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from maild.store.models import OutboxMessage

    row_id = queue(db, blobs, "slow")
    (stale_row,) = outbox.claim(db, "sender-a", 1, 60)
    T = OutboxMessage.__table__
    with db.engine.begin() as conn:  # A stalled (e.g. waiting on the rate limit) past its lease
        conn.execute(update(T).where(T.c.id == row_id).values(claimed_until=utcnow() - timedelta(seconds=1)))
    assert outbox.recover_stale(db) == {"sent": 0, "retry": 1, "ambiguous": 0}
    assert [r.id for r in outbox.claim(db, "sender-b", 1, 60)] == [row_id]

    late = OutboxSender(db, blobs, smtp_sink.transport(), "sender-a")

    async def go() -> str:
        try:
            return await late._send_one(stale_row)
        finally:
            await late.transport.close()

    assert asyncio.run(go()) == ""
    assert not smtp_sink.handler.received
    row = outbox.get(db, row_id)
    assert row.status == "sending" and row.claimed_by == "sender-b" and row.data_started_at is None


def test_a_4xx_reply_to_the_end_of_data_is_retried_with_backoff_not_interrupted(db: Database, blobs: BlobStore,
                                                                                smtp_sink: Sink) -> None:
    """Greylisting and content filters answer 451 after the message: a definite "not accepted"."""
    smtp_sink.handler.data_reply = "451 4.7.1 greylisted, come back later"
    row_id = queue(db, blobs, "grey")
    assert send_all(db, blobs, smtp_sink.transport()) == {"sent": 0, "retry": 1, "failed": 0}
    row = outbox.get(db, row_id)
    assert row.status == "retry" and row.attempts == 1 and not row.last_error.startswith(outbox.AMBIGUOUS)
    assert "451 4.7.1 greylisted" in row.last_error and row.data_started_at is None
    assert as_utc(row.next_attempt_at) > utcnow()
    smtp_sink.handler.data_reply = None
    with db.engine.begin() as conn:  # the backoff has passed
        conn.execute(outbox.T.update().values(next_attempt_at=utcnow()))
    assert send_all(db, blobs, smtp_sink.transport()) == {"sent": 1, "retry": 0, "failed": 0}
    assert [r.subject for r in smtp_sink.handler.received] == ["offer grey"]
