"""Opt-in CPU profiles of ingest: with MAILD_PROFILE_DIR set, each folder pass and each parser process writes one."""

from __future__ import annotations

import cProfile
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.util import Finalize
from pathlib import Path

PROFILE_DIR_ENV = "MAILD_PROFILE_DIR"


def _target(name: str) -> Path | None:
    directory = os.environ.get(PROFILE_DIR_ENV)
    if not directory:
        return None
    Path(directory).mkdir(parents=True, exist_ok=True)
    return Path(directory) / f"{name}-{os.getpid()}-{threading.get_ident()}.prof"


@contextmanager
def profiled(name: str) -> Iterator[None]:
    """cProfile this thread's CPU time (time.thread_time: other threads and a loaded machine do not count) while
    the block runs, into MAILD_PROFILE_DIR/<name>-<pid>-<thread>.prof; nothing when the variable is unset."""
    target = _target(name)
    if target is None:
        yield
        return
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        profile.dump_stats(target)


def profile_process(name: str) -> None:
    """cProfile this process's main thread from now until it exits normally (a parser process: until the pool shuts
    down), when MAILD_PROFILE_DIR is set."""
    target = _target(name)
    if target is None:
        return
    profile = cProfile.Profile(time.thread_time)
    profile.enable()

    def dump() -> None:
        profile.disable()
        profile.dump_stats(target)

    Finalize(profile, dump, exitpriority=100)
