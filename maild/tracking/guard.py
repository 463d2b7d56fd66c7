"""Connection limits for the tracking endpoint: a deadline on every request head and a cap on open connections.

uvicorn closes idle keep-alive connections, but it waits for ever for a request head that arrives a byte at a
time (slowloris), and it counts connections only to answer 503 once a request is complete: slow sockets pile up
until the process has no file descriptor left, and then ingest and `/health` stop too. `GuardedH11Protocol` is
uvicorn's h11 protocol plus:

- a deadline: a connection waiting for a request (from its start, or from the end of its previous response)
  must deliver the whole request head within `header_timeout` seconds, however it trickles; else it is closed.
  Bytes do not extend the deadline. A request being answered has none (the handlers end by themselves).
- a cap: with more than `max_connections` open, a new connection closes the one that has been waiting longest
  for its request (a slow or idle client; itself if every other one is being answered), so slow sockets never
  use up the process's files nor keep a quick client out.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("maild.tracking")


@dataclass
class ConnectionGuard:
    """The limits and the connections waiting for a request (oldest first), shared by one server's connections."""

    max_connections: int
    header_timeout: float
    waiting: dict[GuardedH11Protocol, None] = field(default_factory=dict)
    timed_out: int = 0  # connections closed for not sending a request head in time
    evicted: int = 0  # connections closed to make room for a new one

    def protocol(self) -> type[GuardedH11Protocol]:
        """The protocol class to give uvicorn (`uvicorn.Config(http=...)`), bound to this guard."""
        return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": self})

    def make_room(self, newcomer: GuardedH11Protocol) -> None:
        open_ = [c for c in newcomer.connections if not c.transport.is_closing()]
        excess = len(open_) - self.max_connections
        for connection in list(self.waiting):
            if excess <= 0:
                return
            if connection is not newcomer and not connection.transport.is_closing():
                self.evicted += 1
                connection.drop()
                excess -= 1
        if excess > 0:  # every other connection is being answered: the newcomer waits its turn elsewhere
            self.evicted += 1
            newcomer.drop()


class GuardedH11Protocol(H11Protocol):
    guard: ClassVar[ConnectionGuard]
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait_for_request()
        if len(self.connections) > self.guard.max_connections:
            self.guard.make_room(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._answering():
            self._stop_waiting()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._stop_waiting()
        if not self._answering() and not self.transport.is_closing():
            self._wait_for_request()  # a fresh deadline for the next request on this connection

    def drop(self) -> None:
        self._stop_waiting()
        if not self.transport.is_closing():
            self.transport.close()

    def _answering(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _wait_for_request(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.guard.header_timeout, self._too_slow)
            self.guard.waiting[self] = None

    def _stop_waiting(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.guard.waiting.pop(self, None)

    def _too_slow(self) -> None:
        self._deadline = None
        self.guard.waiting.pop(self, None)
        if not self.transport.is_closing():
            self.guard.timed_out += 1
            log.debug("tracking: closed a connection that sent no complete request in %gs",
                      self.guard.header_timeout)
            self.transport.close()
