from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from maild.outbound import outbox
from maild.store.db import Database
from tests.outbound.conftest import Sink
from tests.outbound.crash_sender import BATCH

ROOT = Path(__file__).resolve().parents[2]


def run_sender(db: Database, blob_dir: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.outbound.crash_sender", db.url, str(blob_dir), str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_kill_9_mid_batch_sends_each_key_at_most_once_and_loses_none(db: Database, tmp_path: Path,
                                                                       smtp_sink: Sink) -> None:
    smtp_sink.handler.delay_data = 0.1  # the kill lands while a DATA is in flight
    first = run_sender(db, tmp_path / "blobs", smtp_sink.port)
    deadline = time.monotonic() + 60
    while len(smtp_sink.handler.received) < 10:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the first sender made no progress"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    received_at_kill = len(smtp_sink.handler.received)
    assert received_at_kill < BATCH

    smtp_sink.handler.delay_data = 0.0
    second = run_sender(db, tmp_path / "blobs", smtp_sink.port)
    _out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    time.sleep(0.3)  # a DATA of the killed sender may still be finishing in the sink

    seen = collections.Counter(r.subject.removeprefix("offer ") for r in smtp_sink.handler.received)
    assert all(n == 1 for n in seen.values()), seen.most_common(3)
    rows = {row.idempotency_key: row for row in outbox.listing(db)}
    assert len(rows) == BATCH  # the second run's enqueue was a no-op for every key
    statuses = collections.Counter(row.status for row in rows.values())
    assert set(statuses) <= {"sent", "failed"}, statuses
    for key, row in rows.items():
        if row.status == "sent":
            assert seen[key] == 1
        else:  # interrupted after DATA began: visible, never re-sent automatically
            assert row.last_error == outbox.INTERRUPTED
    assert statuses["sent"] >= received_at_kill - 2
