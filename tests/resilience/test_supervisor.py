"""Issue 11 item 3: a worker that dies is restarted by the supervisor and shown, with its error and restart
count, in `maild status` (worker_status table) and `/health` (the board in memory)."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from typing import Any

import pytest

from maild.cli.render import print_status
from maild.config import TrackingConfig
from maild.health import HealthBoard, WorkerHealth
from maild.status import collect
from maild.store.db import Database
from maild.supervisor import Supervisor
from maild.tracking.app import create_app
from maild.tracking.listener import TrackingListener
from maild.tracking.server import TrackingServer
from tests.support.waiting import wait_for

SECRET = b"s" * 32


class FlakyWorker:
    """Raises on its first two runs (as a worker with a bug would), then runs until stopped."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.runs = 0

    def run(self) -> None:
        self.runs += 1
        if self.runs <= 2:
            raise RuntimeError(f"worker bug number {self.runs}")
        self.stop.wait()


def _get(url: str) -> tuple[int, dict[str, Any]]:
    import json

    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_dying_worker_is_restarted_and_shown_in_status(db: Database, capsys: pytest.CaptureFixture[str]) -> None:
    stop = threading.Event()
    supervisor = Supervisor(db, "host:1:abc", stop, restart_max_delay=0.2, heartbeat=0.2)
    worker = FlakyWorker(stop)
    health = WorkerHealth("flaky")
    supervisor.start(health, worker.run)
    supervisor.start_heartbeat()
    try:
        wait_for(lambda: worker.runs == 3, what="the worker to be started a third time")
        view = health.view()
        assert view.restarts == 2 and view.last_error == "RuntimeError: worker bug number 2"

        def reported() -> bool:
            rows = collect(db)["workers"]
            return bool(rows) and rows[0]["restarts"] == 2
        wait_for(reported, what="the supervisor to write the worker's state")
        data = collect(db)
        row, = data["workers"]
        assert row["name"] == "flaky" and row["owner"] == "host:1:abc"
        assert row["last_error"] == "RuntimeError: worker bug number 2"
        print_status(data)
        out = capsys.readouterr().out
        assert "worker   flaky: restarting   restarts 2" in out or "worker   flaky: running   restarts 2" in out
        assert "RuntimeError: worker bug number 2" in out
    finally:
        stop.set()
        supervisor.join(10)
    supervisor.forget()
    assert collect(db)["workers"] == []


def test_health_shows_each_worker_and_fails_while_one_retries(db: Database) -> None:
    board = HealthBoard()
    ingest, sender = board.worker("ingest mbox/INBOX"), board.worker("outbox")
    ingest.ok()
    sender.ok()
    cfg = TrackingConfig(listen_port=0)
    server = TrackingServer(create_app(db, SECRET, cfg, workers=board.views), "127.0.0.1", 0, cfg)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/health"
        status, body = _get(url)
        assert status == 200 and body["status"] == "ok"
        assert {w["name"]: w["state"] for w in body["workers"]} == {"ingest mbox/INBOX": "running",
                                                                      "outbox": "running"}
        sender.failed(ConnectionRefusedError("[Errno 111] Connection refused"), retry_in=4)
        status, body = _get(url)
        assert status == 503 and body["status"] == "error" and body["database"] is True
        outbox, = (w for w in body["workers"] if w["name"] == "outbox")
        assert outbox["state"] == "retrying" and outbox["attempt"] == 1
        assert outbox["last_error"] == "ConnectionRefusedError: [Errno 111] Connection refused"
        sender.ok()
        assert _get(url)[0] == 200
    finally:
        server.stop()


def test_a_tracking_server_that_stops_by_itself_is_started_again(db: Database) -> None:
    cfg = TrackingConfig(listen_port=0)
    server = TrackingServer(create_app(db, SECRET, cfg), "127.0.0.1", 0, cfg)
    listener = TrackingListener(server, SECRET)
    listener.start()
    try:
        assert listener.serving and server.failure is None
        assert server._server is not None
        server._server.should_exit = True  # uvicorn ends its loop as if it had failed
        wait_for(lambda: server.failure is not None, what="the serving thread to end")
        listener.check()  # what the supervisor does at every heartbeat
        assert listener.health.restarts == 1
        assert _get(f"http://127.0.0.1:{server.port}/health")[0] == 200
        listener.check()
        assert listener.health.view().state == "running" and listener.health.restarts == 1
    finally:
        listener.stop()


def test_a_server_whose_port_is_taken_at_restart_stays_shown_until_it_serves_again(db: Database) -> None:
    import socket

    from maild.server_keeper import ServerKeeper

    cfg = TrackingConfig(listen_port=0)
    server = TrackingServer(create_app(db, SECRET, cfg), "127.0.0.1", 0, cfg)
    server.start()
    keeper = ServerKeeper("web", server)
    squatter = socket.socket()
    try:
        keeper.check()
        assert keeper.health.view().state == "running"
        assert server._server is not None
        server._server.should_exit = True
        wait_for(lambda: server.failure is not None, what="the serving thread to end")
        wait_for(lambda: not _port_taken(server.port), what="the port to be released")
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", server.port))
        squatter.listen(1)
        keeper.check()
        view = keeper.health.view()
        assert view.state == "restarting" and view.restarts == 1 and "already in use" in (view.last_error or "")
        keeper.check()  # still failing: not reported as running
        assert keeper.health.view().state == "restarting"
        squatter.close()

        def serving_again() -> bool:
            keeper.check()
            return keeper.health.view().state == "running"
        wait_for(serving_again, what="the server to serve again once the port is free")
        assert _get(f"http://127.0.0.1:{server.port}/health")[0] == 200
    finally:
        squatter.close()
        server.stop()


def _port_taken(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
