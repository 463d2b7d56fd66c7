"""Helper processes (parsers, the tracking writer) die with the daemon: Linux's parent-death signal."""

from __future__ import annotations

import ctypes
import ctypes.util
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux: get SIGKILL when the process that started this one dies (even by kill -9), so none is orphaned.
    The signal follows the thread that forked this process: start helpers from a thread that lives as long."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the helper still ends when its pipe from the daemon closes
