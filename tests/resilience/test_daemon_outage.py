"""Issue 11 item 3: a PostgreSQL outage while the daemon ingests from Dovecot and sends to an SMTP peer.

The test database is cut off (new connections refused, open ones ended) without stopping the shared server.
Afterwards every queued mail is sent once (rows whose DATA began before the cut may stay ambiguous, never sent
twice), ingest goes on, and the workers' errors were visible in `/health`'s board and `maild status`.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from sqlalchemy import func, select

from maild.daemon import Daemon
from maild.outbound import outbox
from maild.status import collect
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.store.models import Message
from tests.conftest import Mailbox
from tests.helpers import config_at, make_message
from tests.outbound.conftest import Sink
from tests.outbound.helpers import queue
from tests.support.pg_outage import allow_connections, refuse_connections
from tests.support.waiting import wait_for


def _config(home: Path, pg_url: str, mailbox: Mailbox, sink: Sink) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "rules").mkdir()
    data = {
        "database": {"url": pg_url},
        "storage": {"blob_dir": "blobs"},
        "ingest": {"poll_interval": 2, "lock_ttl": 6, "batch_messages": 10},
        "sources": [mailbox.source()],
        "outbound": {"transport": {"type": "smtp", "host": sink.host, "port": sink.port, "security": "plain",
                                   "timeout": 5, "max_connections": 2}},
        "tracking": {"enabled": False},
        "web": {"listen_port": 0},  # any free port: tests run side by side
        "rules": {"event_interval": 1},
    }
    path = home / "maild.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextmanager
def running(daemon: Daemon) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        daemon.stop.set()
        thread.join(60)


def _messages(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Message.__table__)).scalar_one())


def _states(daemon: Daemon) -> dict[str, str]:
    return {view.name: view.state for view in daemon.board.views()}


def test_database_outage_mid_run_then_everything_is_sent_once_and_ingest_goes_on(
        tmp_path: Path, pg_url: str, pg_db: Database, mailbox: Mailbox, smtp_sink: Sink) -> None:
    mailbox.append([make_message(subject=f"before {i}") for i in range(30)])
    config = config_at(_config(tmp_path / "home", pg_url, mailbox, smtp_sink))
    daemon = Daemon(config)
    smtp_sink.handler.delay_data = 0.02  # the sends are still going on when the database goes
    blobs = BlobStore(config.blob_dir)
    with running(daemon) as thread:
        wait_for(lambda: _messages(pg_db) == 30, what="the first 30 messages ingested")
        keys = [f"out{i}" for i in range(150)]
        for key in keys:
            queue(pg_db, blobs, key, to=f"{key}@customer.example")
        wait_for(lambda: len(smtp_sink.handler.received) >= 10, what="sending under way")
        refuse_connections(pg_url)
        try:
            mailbox.append([make_message(subject=f"during {i}") for i in range(20)])
            wait_for(lambda: _states(daemon).get("outbox") == "retrying", what="the sender to meet the outage")
            wait_for(lambda: _states(daemon).get(f"ingest {mailbox.source()['name']}/INBOX") == "retrying",
                     what="the folder worker to meet the outage")
        finally:
            allow_connections(pg_url)
        mailbox.append([make_message(subject=f"after {i}") for i in range(5)])
        wait_for(lambda: _messages(pg_db) == 55, what="ingest to go on after the outage")

        def received() -> Counter[str]:
            return Counter(r.recipients[0].split("@")[0] for r in list(smtp_sink.handler.received))

        def settled() -> bool:
            """Every row sent, or left ambiguous (DATA had begun, nothing received); each delivery recorded."""
            rows = outbox.listing(pg_db)
            done = all(r.status == "sent" or (r.status in ("sending", "ambiguous") and r.data_started_at is not None)
                       for r in rows)
            return done and {r.idempotency_key for r in rows if r.status == "sent"} == set(received())

        try:
            wait_for(settled, what="every queued row sent (or left ambiguous: DATA had begun)")
        except AssertionError:
            rows_now = outbox.listing(pg_db)
            raise AssertionError(str(Counter((r.status, r.data_started_at is not None, r.claimed_by, r.last_error)
                                             for r in rows_now))) from None
        rows = {r.idempotency_key: r for r in outbox.listing(pg_db)}
        assert max(received().values()) == 1, "nothing is sent twice"
        ambiguous = [k for k, r in rows.items() if r.status != "sent"]
        assert len(ambiguous) <= 16, "at most one data-start window is left for a person to check"
        try:
            wait_for(lambda: all(state == "running" for state in _states(daemon).values()),
                     what="every worker running again")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {daemon.board.views()}") from None
        assert thread.is_alive()
        board = {view.name: view for view in daemon.board.views()}
        assert board["outbox"].last_error is not None and "OperationalError" in board["outbox"].last_error

        def status_shows_the_outbox_error() -> bool:
            workers = {w["name"]: w for w in collect(pg_db)["workers"]}
            return "outbox" in workers and "OperationalError" in (workers["outbox"]["last_error"] or "")

        wait_for(status_shows_the_outbox_error, what="maild status to show the sender's last error")
