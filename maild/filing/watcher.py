"""One filing watcher per daemon: every few seconds, one query for the folders with filing planned meanwhile (a
rule's move, a triage assignment), and a wake-up for just the workers of those folders that are waiting."""

from __future__ import annotations

import logging
import threading

from maild.filing.runner import folders_with_pending
from maild.health import WorkerHealth
from maild.store.checkpoints import FolderRef
from maild.store.db import Database
from maild.wakeup import Wakeup

log = logging.getLogger("maild.filing")

CHECK_SECONDS = 5.0  # how soon filing planned for a waiting folder is carried out


class FilingWatcher:
    def __init__(self, db: Database, interval: float = CHECK_SECONDS) -> None:
        self.db = db
        self.interval = interval
        self.health = WorkerHealth("filing watcher")
        self._lock = threading.Lock()
        self._waiting: dict[tuple[int, str], Wakeup] = {}

    def watch(self, ref: FolderRef, wake: Wakeup) -> None:
        """The folder's worker waits now: set `wake` when filing is planned for the folder."""
        with self._lock:
            self._waiting[(ref.source_id, ref.folder)] = wake

    def forget(self, ref: FolderRef) -> None:
        """The worker is back at work (it carries out its folder's filing in its pass)."""
        with self._lock:
            self._waiting.pop((ref.source_id, ref.folder), None)

    def run(self, stop: threading.Event) -> None:
        """Look every `interval` seconds until `stop` is set (a failed look is tried again at the next)."""
        while not stop.wait(self.interval):
            try:
                self.look()
                self.health.ok()
            except Exception as exc:
                log.warning("could not look for planned filing", extra={"fields": {"error": str(exc)}})
                self.health.failed(exc, self.interval)

    def look(self) -> int:
        """Wake the waiting workers whose folder has filing to do; return how many were woken."""
        with self._lock:
            if not self._waiting:
                return 0
        pending = folders_with_pending(self.db)
        with self._lock:
            due = [wake for folder, wake in self._waiting.items() if folder in pending]
        for wake in due:
            wake.set()
        return len(due)
