"""Capped exponential backoff with jitter, for reconnecting to servers that went away."""

import random


def backoff_delay(attempt: int, cap: float, base: float = 1.0) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): full exponential, capped, 50-100% jitter."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return ceiling * random.uniform(0.5, 1.0)
