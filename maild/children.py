"""Helper processes (parsers, the tracking writer) die with the daemon: Linux's parent-death signal."""

from __future__ import annotations

import contextlib
import signal

from maild.libc import libc

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux: get SIGKILL when the process that started this one dies (even by kill -9), so none is orphaned.
    The signal follows the thread that forked this process: start helpers from a thread that lives as long."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the helper ends when its pipe from us closes
        libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
