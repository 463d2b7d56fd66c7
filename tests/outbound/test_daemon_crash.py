"""kill -9 of a real `maild run` while it sends through an SMTP peer that holds every DATA, then a restart.

Only a row whose DATA had begun on a connection can be ambiguous (at most one per connection); every other
claimed row is re-sent by the restarted daemon; nothing is sent twice automatically, nothing is dropped.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from sqlalchemy import select

from maild.outbound import attempts, outbox
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.store.models import OutboxMessage
from tests.outbound.conftest import Sink
from tests.outbound.helpers import queue

ROOT = Path(__file__).resolve().parents[2]
MAILS = 40
CONNECTIONS = 2
T = OutboxMessage.__table__


def write_home(home: Path, db: Database, sink: Sink) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    config = home / "maild.yaml"
    config.write_text(yaml.safe_dump({
        "database": {"url": db.url}, "storage": {"blob_dir": "blobs"}, "sources": [],
        "outbound": {"sender": "sales@example.test", "transport": {
            "type": "smtp", "host": sink.host, "port": sink.port, "security": "plain", "timeout": 60,
            "max_connections": CONNECTIONS}},
        "tracking": {"enabled": False}, "rules": {"enabled": False}}, sort_keys=False))
    return config


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "maild", "--config", str(config), "run"], cwd=ROOT,
                                stdout=out, stderr=out, env={**os.environ, "PYTHONPATH": str(ROOT)})


def wait_for(condition, what: str, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None,
             timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"maild exited ({proc.returncode}) before {what}: "
                                 f"{log.read_text()[-3000:] if log else ''}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def statuses(db: Database) -> collections.Counter[str]:
    with db.engine.connect() as conn:
        return collections.Counter(conn.execute(select(T.c.status)).scalars())


def test_kill_9_of_the_daemon_leaves_at_most_one_ambiguous_row_per_connection(db: Database, tmp_path: Path,
                                                                              smtp_sink: Sink) -> None:
    home = tmp_path / "home"
    config = write_home(home, db, smtp_sink)
    blobs = BlobStore(home / "blobs")
    for i in range(MAILS):
        queue(db, blobs, f"crash-{i:02d}", to=f"p{i}@customer{i % 3}.example")
    smtp_sink.handler.delay_data = 0.3  # the peer holds every DATA: the kill lands while DATA is in flight
    log = tmp_path / "maild.log"

    first = start(config, log)
    try:
        wait_for(lambda: len(smtp_sink.handler.received) >= 6 and smtp_sink.handler.in_data > 0,
                 "the first daemon to be mid-DATA", first, log)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    with db.engine.connect() as conn:
        at_kill = conn.execute(select(T.c.id, T.c.data_started_at).where(T.c.status == "sending")).all()
    assert any(started is None for _, started in at_kill), "some claimed rows had not begun DATA"
    assert sum(started is not None for _, started in at_kill) <= 2 * CONNECTIONS  # this DATA + the last reply

    smtp_sink.handler.delay_data = 0.0
    second = start(config, log)
    try:
        wait_for(lambda: not ({"queued", "sending", "retry"} & set(statuses(db))), "every row to be settled",
                 second, log)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, log.read_text()[-3000:]
    wait_for(lambda: smtp_sink.handler.in_data == 0, "the held DATAs of the killed daemon to finish")

    received = collections.Counter(r.subject.removeprefix("offer ") for r in smtp_sink.handler.received)
    assert set(received.values()) == {1}, received.most_common(3)  # nothing sent twice
    rows = {row.idempotency_key: row for row in outbox.listing(db)}
    assert len(rows) == MAILS
    counts = collections.Counter(row.status for row in rows.values())
    assert set(counts) <= {"sent", "ambiguous"}, counts  # nothing dropped, nothing failed
    assert counts["ambiguous"] <= CONNECTIONS
    for key, row in rows.items():
        if row.status == "sent":
            assert received[key] == 1, key
        else:  # DATA began on a connection of the killed daemon, no reply on record: for a person
            assert row.data_started_at is not None and " -> 127.0.0.1:" in row.data_connection
            assert received[key] <= 1
            assert [a.outcome for a in attempts.story(db, row.id)] == ["ambiguous"]
    assert sum(received.values()) >= counts["sent"]
