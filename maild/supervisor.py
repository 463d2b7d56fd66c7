"""Keeps the daemon's long-running workers alive and visible: a worker that ends or raises is restarted after a
capped backoff, and every worker's state (running, retrying, restarting; last error; restarts) is written to the
`worker_status` table every HEARTBEAT seconds for `maild status` (`/health` reads the board in memory)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from maild.backoff import Backoff
from maild.health import HealthBoard, WorkerHealth, describe
from maild.store import worker_status
from maild.store.db import Database

log = logging.getLogger("maild.daemon")

RESTART_MAX_DELAY = 30.0  # cap of the wait before a dead worker is started again
STABLE_RUN = 60.0  # a worker that ran this long before it died starts again after the shortest wait
HEARTBEAT = 5.0  # seconds between two writes of the board to the database
STATUS_FRESH = 30.0  # `maild status` shows the rows of daemons that reported within this many seconds


class Supervisor:
    def __init__(self, db: Database, owner: str, stop: threading.Event, board: HealthBoard | None = None, *,
                 restart_max_delay: float = RESTART_MAX_DELAY, heartbeat: float = HEARTBEAT) -> None:
        self.db = db
        self.owner = owner
        self.stop = stop
        self.board = board or HealthBoard()
        self.restart_max_delay = restart_max_delay
        self.heartbeat = heartbeat
        self._threads: list[threading.Thread] = []
        self._checks: list[Callable[[], None]] = []

    def start(self, health: WorkerHealth, target: Callable[[], None]) -> threading.Thread:
        """Run `target` in a thread of its own until `stop` is set, starting it again whenever it ends."""
        self.board.add(health)
        thread = threading.Thread(target=self._keep, args=(health, target), name=f"worker:{health.name}",
                                  daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    def watch(self, check: Callable[[], None]) -> None:
        """Call `check` at every heartbeat (e.g. restart a server thread that ended); its errors are logged."""
        self._checks.append(check)

    def start_heartbeat(self) -> threading.Thread:
        thread = threading.Thread(target=self._beat, name="supervisor", daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    def join(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def forget(self) -> None:
        """At a clean stop: this daemon's rows leave `worker_status`."""
        try:
            worker_status.forget(self.db, self.owner)
        except Exception as exc:
            log.debug("could not clear worker status: %s", exc)

    def _keep(self, health: WorkerHealth, target: Callable[[], None]) -> None:
        backoff = Backoff(self.restart_max_delay)
        while not self.stop.is_set():
            began = time.monotonic()
            reason: BaseException | str
            try:
                target()
                if self.stop.is_set():
                    break
                reason = "the worker ended by itself"
            except BaseException as exc:  # CancelledError, SystemExit in a thread: restarted all the same
                reason = exc
                log.exception("worker %s died", health.name)
            if time.monotonic() - began >= STABLE_RUN:
                backoff.reset()
            delay = backoff.failed()
            health.died(reason, delay)
            log.error("worker died; restarting", extra={"fields": {
                "worker": health.name, "error": reason if isinstance(reason, str) else describe(reason),
                "restarts": health.restarts, "restart_in": f"{delay:.1f}s"}})
            self.stop.wait(delay)
        health.stopped()

    def _beat(self) -> None:
        while not self.stop.is_set():
            self.beat()
            self.stop.wait(self.heartbeat)

    def beat(self) -> None:
        """Run the checks, then write the board (the database may be down: then the next beat writes it)."""
        for check in self._checks:
            try:
                check()
            except Exception:
                log.exception("supervisor check failed")
        try:
            worker_status.report(self.db, self.owner, self.board.views())
        except Exception as exc:
            log.debug("could not write worker status: %s", exc)
