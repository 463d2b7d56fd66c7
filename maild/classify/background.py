"""The daemon's background backfill: mail stored before classification is classified in small batches after the
start (maild/classify/backfill.py), by one daemon per database (the `classify-backfill` lease), pausing between
batches at least as long as a batch took, so ingest keeps most of the machine; idle once nothing is left."""

from __future__ import annotations

import logging
import threading
import time

from maild.backoff import Backoff
from maild.classify.backfill import Batch, any_unclassified, classify_rows
from maild.classify.base import Settings
from maild.health import WorkerHealth
from maild.store import leases
from maild.store.blobs import BlobStore
from maild.store.db import Database

log = logging.getLogger("maild.classify")
LEASE_NAME = "classify-backfill"
LEASE_TTL = 120.0  # seconds; renewed with every batch
STANDBY = 30.0  # another daemon holds the lease: look again after this many seconds
RETRY_CAP = 60.0  # seconds: the longest wait after failed batches


class BackfillWorker:
    def __init__(self, db: Database, blobs: BlobStore, settings: Settings, owner: str, stop: threading.Event, *,
                 batch: int, pause: float) -> None:
        self.db = db
        self.blobs = blobs
        self.settings = settings
        self.owner = owner
        self.stop = stop
        self.batch = batch
        self.pause = pause
        self.health = WorkerHealth("classify-backfill")
        self.done = threading.Event()  # nothing was left to classify (tests wait for it)
        self.total = Batch()

    def run(self) -> None:
        """Batches until nothing is left (or `stop`); then idle until `stop`. Errors are retried with backoff."""
        backoff = Backoff(RETRY_CAP)
        below: int | None = None
        try:
            while not self.stop.is_set():
                try:
                    wait, below = self._step(below)
                except Exception as exc:  # the database away, the blob store missing: shown, retried
                    delay = backoff.failed()
                    self.health.failed(exc, delay)
                    log.warning("classifying stored mail failed (retry in %.0fs): %s", delay, exc)
                    self.stop.wait(delay)
                    continue
                backoff.reset()
                self.health.ok()
                if wait is None:
                    self.stop.wait()  # nothing left; new mail is classified at ingest
                    return
                self.stop.wait(wait)
        finally:
            self._release()

    def _step(self, below: int | None) -> tuple[float | None, int | None]:
        """One batch; (seconds to wait before the next, or None when nothing is left; the next batch's keyset)."""
        with self.db.engine.connect() as conn:
            left = any_unclassified(conn)
        if not left:
            if not self.done.is_set():
                log.info("stored mail classified: %s", self.total.describe())
            self.done.set()
            return None, None
        if not leases.acquire(self.db, LEASE_NAME, self.owner, LEASE_TTL):
            return STANDBY, None  # another daemon classifies; it may stop, so look again
        began = time.monotonic()
        done = classify_rows(self.db, self.blobs, self.settings, self.batch, below)
        if not done.rows:
            return 0.0, None  # below the keyset all is done; rows above it were left meanwhile: from the top again
        self.total.add(done)
        log.info("classifying stored mail: %s so far", self.total.describe())
        return max(self.pause, time.monotonic() - began), done.lowest_id

    def _release(self) -> None:
        try:
            leases.release(self.db, LEASE_NAME, self.owner)
        except Exception as exc:
            log.debug("could not release the backfill lease: %s", exc)
