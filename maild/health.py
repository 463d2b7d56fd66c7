"""The live state of the daemon's long-running workers: running, retrying after an error, or restarted.

Each worker (folder workers, the outbox sender, the rules scheduler, the tracking endpoint) owns one
`WorkerHealth` and reports what happens to it; the supervisor (maild/supervisor.py) counts restarts; `/health`
reads the board directly and `maild status` reads what the supervisor writes to the `worker_status` table.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from maild.clock import utcnow

RUNNING = "running"
RETRYING = "retrying"  # the last try failed (a dependency's error); the worker waits and tries again
RESTARTING = "restarting"  # the worker died; the supervisor starts it again
STARTING = "starting"
STOPPED = "stopped"


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class HealthView:
    """One worker's state at one moment (what status and /health show)."""

    name: str
    state: str
    attempt: int
    restarts: int
    last_error: str | None
    last_error_at: datetime | None
    retry_at: datetime | None
    since: datetime

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "attempt": self.attempt, "restarts": self.restarts,
                "last_error": self.last_error,
                "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
                "retry_at": self.retry_at.isoformat() if self.retry_at else None, "since": self.since.isoformat()}

    @property
    def healthy(self) -> bool:
        return self.state in (RUNNING, STARTING, STOPPED)


class WorkerHealth:
    """Thread-safe: the worker writes, the supervisor and readers read."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._state = STARTING
        self._since = utcnow()
        self.attempt = 0
        self.restarts = 0
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._retry_at: datetime | None = None

    def ok(self) -> None:
        """The worker's last step succeeded (its earlier error stays visible as last_error)."""
        with self._lock:
            if self._state != RUNNING:
                self._state, self._since = RUNNING, utcnow()
            self.attempt = 0
            self._retry_at = None

    def failed(self, exc: BaseException | str, retry_in: float) -> None:
        """The worker's step failed; it retries in `retry_in` seconds."""
        with self._lock:
            now = utcnow()
            self.attempt += 1
            self._last_error = exc if isinstance(exc, str) else describe(exc)
            self._last_error_at = now
            self._retry_at = now + timedelta(seconds=retry_in)
            if self._state != RETRYING:
                self._state, self._since = RETRYING, now

    def died(self, exc: BaseException | str, restart_in: float) -> None:
        """The worker ended by itself; the supervisor restarts it in `restart_in` seconds."""
        with self._lock:
            now = utcnow()
            self.restarts += 1
            self._last_error = exc if isinstance(exc, str) else describe(exc)
            self._last_error_at = now
            self._retry_at = now + timedelta(seconds=restart_in)
            self._state, self._since = RESTARTING, now

    def stopped(self) -> None:
        with self._lock:
            self._state, self._since, self._retry_at = STOPPED, utcnow(), None

    @property
    def state(self) -> str:
        return self._state

    def view(self) -> HealthView:
        with self._lock:
            return HealthView(self.name, self._state, self.attempt, self.restarts, self._last_error,
                              self._last_error_at, self._retry_at, self._since)


class HealthBoard:
    """Every worker of one daemon, by name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._workers: dict[str, WorkerHealth] = {}

    def add(self, health: WorkerHealth) -> None:
        with self._lock:
            self._workers[health.name] = health

    def worker(self, name: str) -> WorkerHealth:
        with self._lock:
            health = self._workers.get(name)
            if health is None:
                health = self._workers[name] = WorkerHealth(name)
            return health

    def views(self) -> list[HealthView]:
        with self._lock:
            workers = list(self._workers.values())
        return [w.view() for w in workers]
