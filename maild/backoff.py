"""Capped exponential backoff with jitter, for workers retrying a server or a database that went away."""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(attempt: int, cap: float, base: float = 1.0,
                  jitter: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): full exponential, capped, 50-100% jitter."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return ceiling * jitter(0.5, 1.0)


class Backoff:
    """Consecutive failures of one worker. `failed()` gives the next wait; `reset()` after any success (a
    reconnect counts: a server that is back is retried quickly the next time it goes away)."""

    def __init__(self, cap: float, base: float = 1.0,
                 jitter: Callable[[float, float], float] = random.uniform) -> None:
        self.cap = cap
        self.base = base
        self.jitter = jitter
        self.attempt = 0

    def failed(self, cap: float | None = None) -> float:
        """Count a failure; the seconds to wait before the next try (`cap` overrides the usual cap once)."""
        self.attempt += 1
        return backoff_delay(self.attempt, self.cap if cap is None else cap, self.base, self.jitter)

    def reset(self) -> None:
        self.attempt = 0


class ReconnectBackoff(Backoff):
    """The folder workers' policy: after an outage (failures before the source and the database answered), the
    first good connection resets the count, so the next outage is retried quickly; failures that keep coming
    after good connections (a full disk, a message the server cannot send) go on backing off. A refused login
    backs off up to `slow_cap` instead, so a wrong password does not knock every few seconds."""

    def __init__(self, cap: float, slow_cap: float, base: float = 1.0,
                 jitter: Callable[[float, float], float] = random.uniform) -> None:
        super().__init__(cap, base, jitter)
        self.slow_cap = slow_cap
        self._failed_while_connected = False

    def connected(self) -> None:
        """The source and the database answered."""
        if not self._failed_while_connected:
            self.reset()

    def succeeded(self) -> None:
        """A whole step (a pass over the folder) went through."""
        self.reset()
        self._failed_while_connected = False

    def failed_after(self, connected: bool, *, slow: bool = False) -> float:
        """Count a failure that happened after (`connected`) or before a good connection; the wait before the
        next try."""
        self._failed_while_connected = connected
        return self.failed(self.slow_cap if slow else None)
