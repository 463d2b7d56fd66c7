"""The tracking endpoint's HTTP server: uvicorn in a background thread, for `maild run`.

Served with limits that protect the daemon (maild/tracking/guard.py): a deadline on every request head, a cap on
open connections (kept below half the process's open-file limit), idle keep-alive connections closed after
KEEP_ALIVE seconds, request heads of at most MAX_HEAD_BYTES. A port that cannot be bound is a `PortUnavailable`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import socket
import threading
import time
import urllib.error
import urllib.request
import weakref

import uvicorn
from starlette.applications import Starlette

from maild.config import TrackingConfig
from maild.tracking.guard import ConnectionGuard

log = logging.getLogger("maild.tracking")

KEEP_ALIVE = 5.0  # seconds an idle keep-alive connection stays open
MAX_HEAD_BYTES = 16 * 1024  # a longer request head is answered 400 (our URLs are < 200 bytes)
BACKLOG = 1024  # connections the kernel queues for us (they use none of our files until accepted)
# asyncio accepts up to its `backlog` connections per wake-up before any of them reaches the protocol (where the
# cap acts), and a few wake-ups can pass before the connections closed to make room release their files: uvicorn
# gets this small backlog as that batch size, and the cap leaves room for 3 batches.
ACCEPT_BATCH = 32


class PortUnavailable(Exception):
    """The tracking address cannot be bound; the message says which, why, and what to do."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_


class TrackingServer:
    """`start()` returns once the server accepts connections (`.port` is the bound port, even for 0)."""

    def __init__(self, app: Starlette, host: str, port: int, cfg: TrackingConfig | None = None) -> None:
        self.app = app
        self.host = host
        self.port = port
        limits = cfg or TrackingConfig()
        self.guard = ConnectionGuard(connection_cap(limits.max_connections), limits.header_timeout)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._restart_failure: BaseException | None = None

    def start(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            raise RuntimeError("tracking server already started")
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2, http=self.guard.protocol(), ws="none",
                                timeout_keep_alive=KEEP_ALIVE, h11_max_incomplete_event_size=MAX_HEAD_BYTES,
                                backlog=ACCEPT_BATCH)
        self._server = server = uvicorn.Server(config)

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:
                self._error = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name="maild-tracking-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tracking server on {self.host}:{self.port} did not start: {self._error!r}")
            time.sleep(0.01)
        sock.listen(BACKLOG)  # asyncio set the kernel's queue to its batch size; the batch stays small

    @property
    def failure(self) -> BaseException | None:
        """Why the serving thread ended by itself (None while it serves, before start() and after stop())."""
        thread = self._thread
        if thread is None:
            return self._restart_failure  # a restart that could not bind or start
        if thread.is_alive():
            return None
        return self._error or RuntimeError("the tracking server stopped by itself")

    def restart(self) -> None:
        """Serve again after the serving thread ended by itself (same app, same recorder, a new socket)."""
        if self._thread is not None:
            self._thread.join(5.0)
        self._server = self._thread = None
        self._error = None
        try:
            self.start()
        except Exception as exc:
            self._restart_failure = exc
            raise
        self._restart_failure = None

    @property
    def open_connections(self) -> int:
        """Connections open now (not yet being closed)."""
        server = self._server
        if server is None:
            return 0
        return sum(1 for c in list(server.server_state.connections) if not c.transport.is_closing())

    def stop(self, timeout: float = 5.0) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(2.0)
        self._server = self._thread = None
        recorder = getattr(self.app.state, "recorder", None)
        if recorder is not None:
            recorder.close()  # writes whatever hits are still queued

    def __enter__(self) -> TrackingServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def connection_cap(wanted: int) -> int:
    """`wanted`, within half the open-file limit (the other half stays for ingest, the database, SMTP), less
    the accept batches. The soft limit is raised towards the hard one first when that is needed."""
    budget = 2 * (wanted + 3 * ACCEPT_BATCH)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < budget:
        raised = budget if hard == resource.RLIM_INFINITY else min(hard, budget)
        if raised > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
                soft = raised
            except (OSError, ValueError):
                pass
    if soft == resource.RLIM_INFINITY or soft >= budget:
        return wanted
    cap = max(1, soft // 2 - 3 * ACCEPT_BATCH)
    log.warning("tracking.max_connections %d lowered to %d: the open-file limit (ulimit -n) is %d", wanted, cap, soft)
    return cap


_LISTENING: weakref.WeakSet[socket.socket] = weakref.WeakSet()


def _close_listening_sockets() -> None:
    """In a forked child (parser and prepare pools): close its copies of our listening sockets, or the port would
    stay taken (with nobody answering) after this daemon stops, until the child ends."""
    for sock in list(_LISTENING):
        with contextlib.suppress(OSError):
            sock.close()


os.register_at_fork(after_in_child=_close_listening_sockets)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; PortUnavailable (with the reason) when it cannot be had."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError as exc:
        raise PortUnavailable(f"tracking endpoint: cannot resolve listen_host {host!r}: {exc.strerror or exc}",
                              exc.errno) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise PortUnavailable(_why(host, port, exc), exc.errno) from None
    _LISTENING.add(sock)
    return sock


def _why(host: str, port: int, exc: OSError) -> str:
    where = f"tracking endpoint: cannot listen on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (f"{where}: the port is already in use by another process (tracking links would reach that process, "
                f"not maild); stop it or set tracking.listen_port (and base_url) to a free port")
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need privileges); set tracking.listen_port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{where}: {host} is not an address of this machine; set tracking.listen_host"
    return f"{where}: {exc.strerror or exc}"


def check_port(host: str, port: int) -> None:
    """Can host:port be listened on now? Raises PortUnavailable with the reason; binds and releases at once."""
    _bind(host, port).close()


def holder_key_id(host: str, port: int) -> str | None:
    """The key id (`signing.key_id`) that a maild tracking endpoint on host:port announces on /health; None when
    what holds the port is not a maild tracking endpoint (or does not answer)."""
    from maild.tracking.app import KEY_ID_HEADER

    connect = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    url = f"http://[{connect}]:{port}/health" if ":" in connect else f"http://{connect}:{port}/health"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an http_proxy
    try:
        with direct.open(url, timeout=5) as response:
            return response.headers.get(KEY_ID_HEADER)
    except urllib.error.HTTPError as exc:  # a 503 from a maild whose database is down still says who it is
        return exc.headers.get(KEY_ID_HEADER)
    except (OSError, ValueError):
        return None
