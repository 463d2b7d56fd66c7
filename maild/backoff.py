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
