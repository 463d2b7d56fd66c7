"""Time in one place, so every stored timestamp is UTC and tests can reason about it."""

import time
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything maild stores is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def monotonic() -> float:
    """Seconds for measuring intervals (not a date); workers take it as an argument so tests can move it."""
    return time.monotonic()
