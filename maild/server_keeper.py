"""Keeps a server thread of the daemon (the tracking endpoint, the web app) serving: one that ended by itself is
started again, after a capped backoff when it keeps ending, and shown on the health board meanwhile."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from maild.backoff import Backoff
from maild.health import WorkerHealth, describe

log = logging.getLogger("maild.daemon")

RESTART_MAX_DELAY = 30.0


class RestartableServer(Protocol):
    @property
    def failure(self) -> BaseException | None: ...

    def restart(self) -> None: ...


class ServerKeeper:
    def __init__(self, name: str, server: RestartableServer) -> None:
        self.server = server
        self.health = WorkerHealth(name)
        self._backoff = Backoff(RESTART_MAX_DELAY)
        self._restart_at = 0.0

    def check(self) -> None:
        """Called at each heartbeat of the daemon's supervisor."""
        failure = self.server.failure
        if failure is None:
            self.health.ok()
            self._backoff.reset()  # serving (checks come a heartbeat apart: a crash loop stays slow)
            return
        now = time.monotonic()
        if now < self._restart_at:
            return
        delay = self._backoff.failed()
        self._restart_at = now + delay
        log.error("%s stopped (%s); starting it again", self.health.name, failure)
        try:
            self.server.restart()
        except Exception as exc:
            log.error("%s could not start again: %s", self.health.name, exc)
            self.health.died(f"{describe(failure)}; could not start again: {describe(exc)}", delay)
            return
        self.health.died(failure, 0)
        self.health.ok()
