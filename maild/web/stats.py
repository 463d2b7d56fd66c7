"""Server-side request timing and SQL query counts, per route: an ASGI middleware and an engine listener.

The time is from the request reaching the app to the last byte of the response leaving it (queueing in the kernel
and the client's own latency are not in it); the query count is every statement the request ran on the database.
`bench/web.py` reads them; a test checks that a page's query count does not grow with its rows.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Engine, event
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_queries: ContextVar[list[int] | None] = ContextVar("maild_web_queries", default=None)
KEEP = 20000  # timings kept per route


def count_queries(engine: Engine) -> None:
    """Count each statement run on `engine` for the request in progress (no-op outside requests)."""
    if getattr(engine, "_maild_counted", False):
        return

    def before(*_args: Any) -> None:
        counter = _queries.get()
        if counter is not None:
            counter[0] += 1

    event.listen(engine, "before_cursor_execute", before)
    engine._maild_counted = True  # type: ignore[attr-defined]


class RequestStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.times: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=KEEP))
        self.queries: dict[str, deque[int]] = defaultdict(lambda: deque(maxlen=KEEP))

    def add(self, route: str, seconds: float, queries: int) -> None:
        with self._lock:
            self.times[route].append(seconds)
            self.queries[route].append(queries)

    def reset(self) -> None:
        with self._lock:
            self.times.clear()
            self.queries.clear()

    def percentile(self, route: str, pct: float) -> float | None:
        with self._lock:
            values = sorted(self.times.get(route, ()))
        if not values:
            return None
        return values[min(len(values) - 1, round(pct / 100 * (len(values) - 1)))]

    def query_counts(self, route: str) -> set[int]:
        with self._lock:
            return set(self.queries.get(route, ()))


class StatsMiddleware:
    def __init__(self, app: ASGIApp, stats: RequestStats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counter = [0]
        token = _queries.set(counter)
        start = time.perf_counter()
        status = [0]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            _queries.reset(token)
            route = scope.get("route")
            name = f"{scope['method']} {getattr(route, 'path', '?')}"
            self.stats.add(name, time.perf_counter() - start, counter[0])
