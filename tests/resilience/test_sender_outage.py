"""The outbox sender survives a database outage and sends what is queued once the database is back."""

from __future__ import annotations

import asyncio
import email
import threading
import time
from collections import Counter
from pathlib import Path

from maild.outbound import attempts, outbox
from maild.outbound.sender import OutboxSender
from maild.store.blobs import BlobStore
from maild.store.db import Database
from tests.outbound.conftest import Sink, SinkHandler, free_port
from tests.outbound.helpers import queue
from tests.support.pg_outage import allow_connections, refuse_connections
from tests.support.waiting import wait_for


def _statuses(db: Database) -> Counter[str]:
    return Counter(row.status for row in outbox.listing(db))


def test_sender_started_while_the_database_is_down_sends_once_it_is_back(
        pg_db: Database, pg_url: str, tmp_path: Path, smtp_sink: Sink) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    for i in range(20):
        queue(pg_db, blobs, f"k{i}")
    sender = OutboxSender(pg_db, blobs, smtp_sink.transport(max_connections=2), "resilience-test")
    stop = threading.Event()
    refuse_connections(pg_url)  # recover_stale() at the start of run() fails first
    thread = threading.Thread(target=lambda: asyncio.run(sender.run(stop, poll=0.1)), daemon=True)
    thread.start()
    try:
        wait_for(lambda: sender.health.attempt >= 1, what="the sender to meet the outage")
        allow_connections(pg_url)
        wait_for(lambda: _statuses(pg_db) == Counter(sent=20), what="every queued mail sent")
        assert thread.is_alive()
    finally:
        allow_connections(pg_url)
        stop.set()
        thread.join(30)
    assert Counter(r.subject for r in smtp_sink.handler.received) == Counter(f"offer k{i}" for i in range(20))


def test_sender_keeps_running_while_the_smtp_server_is_down_and_sends_once_it_is_back(
        db: Database, tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    from tests.outbound.conftest import SinkHandler, free_port

    blobs = BlobStore(tmp_path / "blobs")
    for i in range(5):
        queue(db, blobs, f"k{i}")
    port = free_port()  # nothing listens there yet: connection refused
    sink = Sink(SinkHandler(), "127.0.0.1", port)
    sender = OutboxSender(db, blobs, sink.transport(), "resilience-test", max_attempts=1000, retry_max_delay=1.0)
    stop = threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(sender.run(stop, poll=0.1)), daemon=True)
    thread.start()
    controller = Controller(sink.handler, hostname="127.0.0.1", port=port)
    started = False
    try:
        wait_for(lambda: all(r.status == "retry" and r.attempts >= 2 for r in outbox.listing(db)),
                 what="every row retried while the server is down")
        assert thread.is_alive() and sender.health.view().state == "running", "a refused connection is no crash"
        controller.start()
        started = True
        wait_for(lambda: _statuses(db) == Counter(sent=5), what="every mail sent once the server is back")
    finally:
        stop.set()
        thread.join(30)
        if started:
            controller.stop()
    assert sorted(r.subject for r in sink.handler.received) == [f"offer k{i}" for i in range(5)]


class _CutDuringData(SinkHandler):
    """`offer b` waits until `offer c`'s DATA began too, cuts the database off and is accepted (250); `offer c`
    is then dropped mid-DATA (the client cannot know whether it arrived)."""

    def __init__(self, pg_url: str) -> None:
        super().__init__()
        self.pg_url = pg_url
        self.cut = asyncio.Event()

    async def _data(self, server, envelope):  # type: ignore[no-untyped-def]
        subject = str(email.message_from_bytes(envelope.original_content)["Subject"])
        if subject == "offer b":
            deadline = time.monotonic() + 30
            while self.in_data < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            refuse_connections(self.pg_url)
            self.cut.set()
        elif subject == "offer c":
            await asyncio.wait_for(self.cut.wait(), 30)
            server.transport.close()
            return "250 never seen by the client"
        return await super()._data(server, envelope)


def test_a_database_outage_mid_pass_ends_like_a_kill_9_once_the_database_is_back(
        pg_db: Database, pg_url: str, tmp_path: Path) -> None:
    """The sender settles its own claims at once, by the rows' saved replies (no waiting for the lease): the
    delivery the database did not take is booked, the row dropped during DATA is ambiguous, the rest is sent."""
    from aiosmtpd.controller import Controller

    blobs = BlobStore(tmp_path / "blobs")
    ids = {key: queue(pg_db, blobs, key, to=f"{key}@customer.example") for key in "abcde"}
    handler = _CutDuringData(pg_url)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    sink = Sink(handler, "127.0.0.1", port)
    sender = OutboxSender(pg_db, blobs, sink.transport(max_connections=2), "outage-test", concurrency=2,
                          lease_seconds=3600)  # the claims never expire during the test
    stop = threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(sender.run(stop, poll=0.1)), daemon=True)
    thread.start()
    try:
        wait_for(lambda: sender.health.attempt >= 1, what="the pass to fail on the outage")
        allow_connections(pg_url)

        def settled() -> bool:
            rows = {row.id: row.status for row in outbox.listing(pg_db)}
            return rows[ids["c"]] == "ambiguous" and sum(s == "sent" for s in rows.values()) == 4

        wait_for(settled, what="the sent rows booked, the dropped one ambiguous")
    finally:
        allow_connections(pg_url)
        stop.set()
        thread.join(30)
        controller.stop()
    assert Counter(r.recipients[0].split("@")[0] for r in handler.received) == Counter("abde")
    ambiguous = outbox.get(pg_db, ids["c"])
    assert ambiguous is not None and ambiguous.data_started_at is not None and ambiguous.smtp_reply is None
    delivered = outbox.get(pg_db, ids["b"])  # its 250 came after the cut: only the sender knew it
    assert delivered is not None and delivered.smtp_reply == "250 2.0.0 queued as sink"
    assert [a.outcome for a in attempts.story(pg_db, ids["b"])] == ["sent"]
