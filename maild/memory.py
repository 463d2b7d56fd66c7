"""glibc's malloc tuned for processes that pass many large byte strings around (fetched mail, parsed bodies).

By default glibc raises its mmap threshold each time a large block is freed, so later mails (20 KB - 20 MB)
are carved out of the heap and of one arena per thread, where freed space is kept, fragmented, instead of going
back to the system: the daemon's resident memory then stays near the peak of everything it ever held. A fixed
threshold (blocks above it are mapped and unmapped on their own), a low trim threshold and two arenas keep it
near what is in use. Elsewhere than glibc nothing happens.
"""

from __future__ import annotations

import ctypes
import gc

from maild.libc import libc

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
LARGE_BLOCK = 128 * 1024


def tune_malloc() -> bool:
    """Set the thresholds and the arena limit for this process; False where mallopt is not available."""
    try:
        mallopt = libc().mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return all(mallopt(option, value) == 1 for option, value in (
        (M_MMAP_THRESHOLD, LARGE_BLOCK), (M_TRIM_THRESHOLD, LARGE_BLOCK), (M_ARENA_MAX, 2)))


def freeze_startup_objects() -> None:
    """Move everything start-up made (modules, classes, settings: never garbage) out of the cyclic collector's
    sight: its full collections, triggered by the many short-lived objects of each mail, then walk only those."""
    gc.collect()
    gc.freeze()
