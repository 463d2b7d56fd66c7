"""A progress bar for one ingest pass, fed by every folder worker at once (thread-safe)."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

import click


class PassProgress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()
        self._bar: Any = None
        self._total = 0

    def __enter__(self) -> PassProgress:
        if self.enabled:
            self._bar = click.progressbar(length=0, label="ingesting", file=click.get_text_stream("stderr"),
                                          show_pos=True, show_eta=True)
            self._bar.__enter__()
        return self

    def update(self, label: str, advance: int, newly_waiting: int) -> None:
        if self._bar is None:
            return
        with self._lock:
            if newly_waiting:
                self._total += newly_waiting
                self._bar.length = max(self._total, 1)
            if advance:
                self._bar.update(advance)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)
