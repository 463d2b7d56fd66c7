"""The tracking writer process: every open written once, by it, and none lost when it or the daemon stops."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from maild.clock import utcnow
from maild.config import TrackingConfig
from maild.store.db import Database
from maild.tracking.app import create_app
from maild.tracking.recorder import EventRecorder, Hit
from maild.tracking.server import TrackingServer
from maild.tracking.signing import sign
from tests.tracking.support import HUMAN, OTHER, SECRET, TOKEN, Endpoint

DEADLINE = 60.0


def _wait(condition: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _gone(pid: int) -> bool:
    """The process has ended (or is a zombie waiting to be reaped by someone else)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _open_many(endpoint: Endpoint, clients: int, each: int) -> None:
    paths = [f"/o/{sign(SECRET, 'o', token, None)}" for token in (TOKEN, OTHER)]
    barrier = threading.Barrier(clients)
    failures: list[int] = []

    def opener(number: int) -> None:
        agent = f"{HUMAN} client/{number}"
        with httpx.Client(base_url=endpoint.base_url, timeout=30, headers={"User-Agent": agent}) as http:
            barrier.wait()
            for i in range(each):
                status = http.get(paths[i % 2]).status_code
                if status != 200:
                    failures.append(status)

    threads = [threading.Thread(target=opener, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    assert not failures


def test_opens_are_written_by_the_writer_process_each_once(endpoint: Endpoint) -> None:
    endpoint.add_outbox(TOKEN)
    endpoint.add_outbox(OTHER)
    recorder = endpoint.server.app.state.recorder
    _open_many(endpoint, clients=6, each=20)
    # Answered does not mean written yet: the writer process starts with the first group (slowly under load).
    assert endpoint.hits("o", at_least=120) == 120
    writer = recorder.process.pid
    assert writer is not None and writer != os.getpid()  # written by a process of its own
    endpoint.server.stop()  # writes what is still queued, then stops the writer
    assert endpoint.hits("o") == 120
    assert len(endpoint.events("mail.opened")) == 12  # 6 clients x 2 mails; the repeats counted on them
    assert _gone(writer)


def test_the_writer_ignores_sigterm_and_a_killed_writer_is_replaced_without_losing_or_doubling(
        endpoint: Endpoint) -> None:
    endpoint.add_outbox(TOKEN)
    endpoint.add_outbox(OTHER)
    recorder = endpoint.server.app.state.recorder
    _open_many(endpoint, clients=2, each=10)
    assert endpoint.hits("o", at_least=20) == 20  # written by the writer process, which is ready by now
    first = recorder.process.pid
    assert first is not None
    os.kill(first, signal.SIGTERM)  # a service manager's stop reaches every process: the daemon decides
    _open_many(endpoint, clients=2, each=10)
    assert endpoint.hits("o", at_least=40) == 40
    assert recorder.process.pid == first
    os.kill(first, signal.SIGKILL)
    _wait(lambda: _gone(first), "the killed writer to end")
    _open_many(endpoint, clients=2, each=10)  # written by a new writer process (or from here while it starts)
    endpoint.server.stop()
    assert endpoint.hits("o") == 60
    assert recorder.process.pid is None  # stopped


def test_hits_pending_at_stop_are_written_here_when_no_writer_process_can_run(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer was killed with the daemon's process group and no new one starts: the stop writes the rest."""
    Endpoint(db, None, "").add_outbox(TOKEN)  # type: ignore[arg-type]
    recorder = EventRecorder(db, TrackingConfig())

    def hit() -> Hit:
        return Hit("mail.opened", "o", TOKEN, utcnow(), HUMAN, "203.0.113.7", "203.0.113.0")

    async def first() -> bool:
        return await recorder.record(hit())

    assert asyncio.run(first()) is True
    writer = recorder.process.pid
    assert writer is not None
    os.kill(writer, signal.SIGKILL)
    _wait(lambda: _gone(writer), "the killed writer to end")

    def cannot_start() -> None:
        raise OSError("fork refused")  # what a process table or memory limit would say

    monkeypatch.setattr(recorder.process, "_start", cannot_start)

    async def queued() -> None:
        for _ in range(25):
            recorder.record_soon(hit())  # answered at once; the loop ends before any group is written

    asyncio.run(queued())
    recorder.close()
    endpoint = Endpoint(db, None, "")  # type: ignore[arg-type]
    assert endpoint.hits("o") == 26
    assert len(endpoint.events("mail.opened")) == 1


def test_thread_mode_writes_in_the_daemon_process(db: Database) -> None:
    cfg = TrackingConfig(writer="thread")
    server = TrackingServer(create_app(db, SECRET, cfg), "127.0.0.1", 0, cfg)
    server.start()
    endpoint = Endpoint(db, server, f"http://127.0.0.1:{server.port}")
    try:
        endpoint.add_outbox(TOKEN)
        endpoint.add_outbox(OTHER)
        assert server.app.state.recorder.process is None
        _open_many(endpoint, clients=2, each=10)
    finally:
        endpoint.http.close()
        server.stop()
    assert endpoint.hits("o") == 20


CHILD = r"""
import asyncio, os, signal, sys
from maild.clock import utcnow
from maild.config import TrackingConfig
from maild.store.db import Database
from maild.tracking.recorder import EventRecorder, Hit

recorder = EventRecorder(Database(sys.argv[1]), TrackingConfig())

async def one():
    return await recorder.record(Hit("mail.opened", "o", sys.argv[2], utcnow(), "agent", "203.0.113.7", None))

print(asyncio.run(one()), recorder.process.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_writer_process_dies_with_the_daemon(db: Database) -> None:
    Endpoint(db, None, "").add_outbox(TOKEN)  # type: ignore[arg-type]
    proc = subprocess.run([sys.executable, "-c", CHILD, db.url, TOKEN], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    recorded, pid = proc.stdout.split()
    assert recorded == "True"
    _wait(lambda: _gone(int(pid)), "the writer process to end with its daemon")


def test_a_group_waiting_for_the_writer_when_the_loop_ends_is_written_by_close(db: Database) -> None:
    """The server's loop ends (a stop) while a group waits its turn in the recorder's thread: close() writes it."""
    Endpoint(db, None, "").add_outbox(TOKEN)  # type: ignore[arg-type]
    recorder = EventRecorder(db, TrackingConfig(writer="thread"))
    release = threading.Event()
    recorder._thread.submit(release.wait, DEADLINE)  # the thread is busy: the next group waits behind this

    async def opens() -> None:
        for _ in range(5):
            recorder.record_soon(Hit("mail.opened", "o", TOKEN, utcnow(), HUMAN, "203.0.113.7", "203.0.113.0"))
        await asyncio.sleep(0.05)  # the flusher hands the group to the thread, where it waits

    asyncio.run(opens())  # ends the loop: the flusher is cancelled with its group not started
    release.set()
    recorder.close()
    assert Endpoint(db, None, "").hits("o") == 5  # type: ignore[arg-type]
