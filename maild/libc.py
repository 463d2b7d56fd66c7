"""The C library's functions maild calls through ctypes (mallopt, prctl, syncfs), found without a subprocess."""

from __future__ import annotations

import ctypes
from functools import cache


@cache
def libc() -> ctypes.CDLL:
    """This process's own symbols, the C library's among them (dlopen(NULL)). ctypes.util.find_library would run
    `ldconfig -p` in a child process each time (~20 ms), at every start of the daemon and of each parser process.
    Raises OSError where there is no such thing."""
    return ctypes.CDLL(None, use_errno=True)
