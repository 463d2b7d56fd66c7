"""The outbox sender survives a database outage and sends what is queued once the database is back."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path

from maild.outbound import outbox
from maild.outbound.sender import OutboxSender
from maild.store.blobs import BlobStore
from maild.store.db import Database
from tests.outbound.conftest import Sink
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
