"""The tracking endpoint under abuse, with real sockets: slow clients (slowloris) are dropped, a cap on open
connections keeps the process's files for the rest of the daemon, quick clients and /health are served
throughout, and HEAD requests record nothing."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from maild.config import TrackingConfig
from maild.store.db import Database
from maild.tracking.app import PIXEL, create_app
from maild.tracking.links import instrument
from maild.tracking.server import TrackingServer
from maild.tracking.signing import sign
from tests.tracking.support import HUMAN, SECRET, TOKEN, Endpoint
from tests.tracking.test_app import HTML

PARTIAL_HEAD = b"GET /health HTTP/1.1\r\nHost: tracking.example\r\n"


def _slow_clients(port: int, count: int) -> list[socket.socket]:
    """`count` connections that each sent the start of a request head and then stall."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(PARTIAL_HEAD)
        sockets.append(sock)
    return sockets


def _trickle_until_closed(sockets: list[socket.socket], within: float) -> list[socket.socket]:
    """Keep sending a header line every half second on each socket (a real slowloris) until the server has
    closed every one of them or `within` seconds have passed; returns those still open."""
    still_open = list(sockets)
    deadline = time.monotonic() + within
    while still_open and time.monotonic() < deadline:
        for sock in list(still_open):
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:  # reset by the server
                still_open.remove(sock)
        if not still_open:
            break
        readable, _, _ = select.select(still_open, [], [], 0.5)
        for sock in readable:
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:  # the server closed it
                still_open.remove(sock)
    return still_open


@pytest.fixture
def guarded(db: Database) -> Iterator[TrackingServer]:
    cfg = TrackingConfig(listen_port=0, max_connections=20, header_timeout=2)
    server = TrackingServer(create_app(db, SECRET, cfg), "127.0.0.1", 0, cfg)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_slow_clients_are_dropped_while_quick_ones_are_served(guarded: TrackingServer) -> None:
    slow = _slow_clients(guarded.port, 40)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{guarded.port}", timeout=10) as http:
            for _ in range(5):  # 40 stalled sockets against a cap of 20: a quick client still gets in
                assert http.get("/health").status_code == 200
        assert guarded.open_connections <= 20
        left = _trickle_until_closed(slow, within=60)
        assert left == [], f"{len(left)} slow connections still open"
        assert guarded.guard.timed_out + guarded.guard.evicted >= 40
        assert httpx.get(f"http://127.0.0.1:{guarded.port}/health", timeout=10).status_code == 200
    finally:
        for sock in slow:
            sock.close()


def test_a_keep_alive_connection_gets_a_fresh_deadline_per_request_and_slow_bodies_are_dropped(
        guarded: TrackingServer) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as sock:
        for _ in range(3):  # quick requests on one connection, spread over more than one header_timeout
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            assert _response(sock).startswith(b"HTTP/1.1 200 OK")
            time.sleep(1.0)
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as sock:
        # A body announced and never sent: answered (GET handlers read no body), then dropped, not held open.
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nx")
        assert _trickle_body_until_closed(sock, within=60)


def _response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(
        b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(4096)
        assert chunk
        body += chunk
    return head + b"\r\n\r\n" + body


def _trickle_body_until_closed(sock: socket.socket, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            sock.sendall(b"x")
            readable, _, _ = select.select([sock], [], [], 0.5)
            if readable and not sock.recv(65536):
                return True
        except OSError:
            return True
    return False


SERVE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
import logging
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from maild.config import TrackingConfig
from maild.store.db import Database
from maild.tracking.app import create_app
from maild.tracking.server import TrackingServer
cfg = TrackingConfig(listen_port=0, header_timeout=30)
server = TrackingServer(create_app(Database(sys.argv[1]), b"s" * 32, cfg), "127.0.0.1", 0, cfg)
server.start()
print(server.port, flush=True)
sys.stdin.read()
server.stop()
"""


def test_a_flood_of_slow_sockets_never_uses_up_the_process_files(tmp_path: Path) -> None:
    """A daemon with 256 open files at most (ulimit -n 256): 400 stalled connections must not take them all, or
    /health (and ingest, the database, SMTP) would stop; the log stays quiet."""
    proc = subprocess.Popen([sys.executable, "-c", SERVE, f"sqlite:///{tmp_path / 'db.sqlite'}"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert proc.stdout is not None and proc.stdin is not None
    slow: list[socket.socket] = []
    try:
        port = int(proc.stdout.readline())
        slow = _slow_clients(port, 400)
        for _ in range(3):
            assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=20).status_code == 200
    finally:
        for sock in slow:
            sock.close()
        _, err = proc.communicate(input="", timeout=60)  # stdin closed: the server stops
    assert "max_connections 500 lowered to 32" in err
    assert len(err.encode()) < 20_000, err[-3000:]


def test_head_requests_record_nothing(endpoint: Endpoint) -> None:
    endpoint.add_outbox(TOKEN)
    instrument(endpoint.db, HTML, TOKEN, endpoint.base_url, SECRET)
    opened = endpoint.http.head(f"/o/{sign(SECRET, 'o', TOKEN, None)}")
    assert opened.status_code == 200 and opened.headers["content-type"] == "image/gif"
    clicked = endpoint.http.head(f"/c/{sign(SECRET, 'c', TOKEN, 1)}")
    assert clicked.status_code == 302 and clicked.headers["location"] == "http://docs.example/guide"
    # What a GET records afterwards is written once everything before it was: HEADs would show by then.
    assert endpoint.http.get(f"/o/{sign(SECRET, 'o', TOKEN, None)}").content == PIXEL
    assert len(endpoint.events("mail.opened", at_least=1)) == 1
    assert endpoint.events("mail.clicked") == []
    assert endpoint.hits("o") == 1 and endpoint.hits("c") == 0


def test_health_names_the_secret_it_serves(endpoint: Endpoint) -> None:
    from maild.tracking.app import KEY_ID_HEADER
    from maild.tracking.signing import key_id

    response = endpoint.http.get("/health")
    assert response.headers[KEY_ID_HEADER] == key_id(SECRET)
    assert key_id(SECRET) != key_id(b"another-secret-0123456789abcdef") and SECRET.decode() not in str(
        response.headers)
    assert HUMAN  # the shared client sends a browser's agent
