"""The pool of parser processes, and what happens when one of them dies.

A parser process may die on a monster message (out of memory, a C-level crash) or be killed from
outside. Neither may lose or wrongly quarantine a batch: the batch is parsed again in a fresh pool, one
message at a time, and only a message that kills a fresh process on its own is quarantined.
Parser processes ignore SIGINT (a Ctrl-C signals the whole process group; the daemon decides what it
means) and die with the daemon. A service manager's SIGTERM to the whole group kills them; the batch in
hand is then parsed again in a fresh pool, so stopping still loses nothing.

The processes are spawned (a fresh interpreter each), not forked: a forked process starts with every page of
the daemon (the CLI, SQLAlchemy, pydantic, the matchers: ~70 MB) and each of them counts in its resident
memory; a spawned one imports the parser alone (~24 MB). Spawned from the thread that holds the pool's lock
(at start, or replacing a broken pool), which lives as long as they do (their parent-death signal follows it).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import types
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

from maild.children import die_with_parent
from maild.classify.base import Settings as ClassifySettings
from maild.ingest import boundaries
from maild.ingest.parse import ParsedMail, Rejected, parse_and_store
from maild.memory import freeze_startup_objects, tune_malloc
from maild.profiling import profile_process
from maild.store.blobs import BlobStore

log = logging.getLogger("maild.ingest")

Parsed = ParsedMail | Rejected
Submitted = tuple[ProcessPoolExecutor, list[Future[list[Parsed]]]]
CHUNKS_PER_WORKER = 4


def _child_init() -> None:
    # A Ctrl-C reaches the whole process group; only the daemon decides what it means. SIGTERM keeps its
    # default: the pool itself terminates its processes that way when it is broken or shut down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    tune_malloc()
    boundaries.install()
    freeze_startup_objects()
    profile_process("parser")


def _parse_chunk(raws: Sequence[bytes], blob_dir: str, max_bytes: int, trusted: frozenset[str],
                 classify: ClassifySettings | None = None) -> list[Parsed]:
    return [parse_and_store(raw, blob_dir, max_bytes, trusted, classify) for raw in raws]


def _warm_up(_: int = 0) -> int:
    return os.getpid()


@contextmanager
def _lean_main() -> Iterator[None]:
    """While processes are spawned: no main module for them to run again. multiprocessing re-imports the parent's
    main script in each spawned process, and for the `maild` console script that is the whole CLI."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")  # no __file__, no __spec__: nothing to re-import
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


class ParserPool:
    def __init__(self, workers: int, blob_dir: str, max_bytes: int,
                 trusted_authserv_ids: frozenset[str] = frozenset(), classify: ClassifySettings | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.classify = classify  # machine-mail classification settings (None: off)
        self.blob_dir = blob_dir
        self.max_bytes = max_bytes
        self.trusted = trusted_authserv_ids
        self._lock = threading.Lock()
        self._executor = self._start(wait=False)  # they start up while the daemon connects and fetches

    def _start(self, wait: bool = True) -> ProcessPoolExecutor:
        """Spawn every process now, from this thread (each submit of the warm-up spawns one, while no other is
        idle); with `wait`, until each has started."""
        executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_child_init)
        with _lean_main():
            futures = [executor.submit(_warm_up) for _ in range(self.workers)]
        for future in futures if wait else ():
            future.result()
        return executor

    def submit(self, raws: Sequence[bytes]) -> Submitted:
        """Hand a batch to the processes in a few chunks (one task per message costs more than it parses)."""
        with self._lock:
            executor = self._executor
        size = max(1, -(-len(raws) // (self.workers * CHUNKS_PER_WORKER)))
        futures = [executor.submit(_parse_chunk, raws[i:i + size], self.blob_dir, self.max_bytes, self.trusted,
                                   self.classify)
                   for i in range(0, len(raws), size)]
        return executor, futures

    def results(self, raws: Sequence[bytes], submitted: Submitted) -> list[Parsed]:
        executor, futures = submitted
        try:
            return [parsed for future in futures for parsed in future.result()]
        except BrokenProcessPool:
            log.warning("a parser process died; parsing this batch again one message at a time")
            self._replace(executor)
            return [self._parse_alone(raw) for raw in raws]

    def _parse_alone(self, raw: bytes) -> Parsed:
        for attempt in (1, 2):
            with self._lock:
                executor = self._executor
            try:
                return executor.submit(parse_and_store, raw, self.blob_dir, self.max_bytes, self.trusted,
                                       self.classify).result()
            except BrokenProcessPool:
                self._replace(executor)
                if attempt == 2:
                    digest = BlobStore(Path(self.blob_dir)).put(raw)  # keep the raw bytes whatever happens
                    return Rejected(digest, len(raw), "the parser process died on this message twice")
        raise AssertionError("unreachable")

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:
                broken.shutdown(wait=False, cancel_futures=True)
                self._executor = self._start()

    def shutdown(self) -> None:
        with self._lock:
            self._executor.shutdown(wait=True, cancel_futures=True)
