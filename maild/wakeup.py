"""Flags that can wake a `poll()`: a thread waiting on a socket also wakes when another thread sets the flag."""

from __future__ import annotations

import contextlib
import os
import select
import threading
import weakref
from collections.abc import Sequence


class Wakeup:
    """A flag with a file descriptor that is readable while the flag is set (an eventfd, else a pipe).

    Any number of threads may poll the same descriptor: setting it wakes them all at once, and it stays
    readable until `clear()`. The descriptor is closed with the object.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        if hasattr(os, "eventfd"):
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._fds = (fd, fd)
        else:  # pragma: no cover - not Linux
            read_end, write_end = os.pipe()
            os.set_blocking(read_end, False)
            self._fds = (read_end, write_end)
        weakref.finalize(self, _close, self._fds)

    def fileno(self) -> int:
        """The descriptor to poll for reading (POLLIN while set)."""
        return self._fds[0]

    def set(self) -> None:
        with self._lock:
            if self._set:
                return
            self._set = True
            os.write(self._fds[1], (1).to_bytes(8, "little"))

    def clear(self) -> None:
        with self._lock:
            if not self._set:
                return
            self._set = False
            read_end = self._fds[0]
            with contextlib.suppress(BlockingIOError):  # nothing to take back
                os.read(read_end, 8)

    def is_set(self) -> bool:
        return self._set


class StopFlag(threading.Event):
    """The daemon's stop flag: a `threading.Event` whose `wakeup` descriptor turns readable when it is set,
    so that every worker waiting in a `poll()` (an IDLE) returns at once."""

    def __init__(self) -> None:
        super().__init__()
        self.wakeup = Wakeup()

    def set(self) -> None:
        super().set()
        self.wakeup.set()

    def clear(self) -> None:
        super().clear()
        self.wakeup.clear()


def _close(fds: tuple[int, int]) -> None:
    for fd in set(fds):
        with contextlib.suppress(OSError):
            os.close(fd)


def wait_for_wakeup(wakeups: Sequence[Wakeup], timeout: float) -> bool:
    """Block until one of `wakeups` is set or `timeout` seconds passed; return whether one was set."""
    if any(wakeup.is_set() for wakeup in wakeups):
        return True
    poller = select.poll()
    for wakeup in wakeups:
        poller.register(wakeup.fileno(), select.POLLIN)
    return bool(poller.poll(max(0.0, timeout) * 1000))
