"""One lease keeper per daemon: the folder leases of its waiting workers renewed together, one UPDATE per round.

A folder worker that waits (in IDLE, or between polls) says until when it will be back (`hold`). Every
lock_ttl/3 the keeper renews, in one statement, the leases of the workers whose word still stands; a worker that
stopped coming back (stuck, dead) is not renewed, so its lease runs out and another daemon may take the folder
(the checkpoint's commit is fenced on the lease in any case). A worker whose lease was taken meanwhile is woken.

Workers of folders that another daemon holds wait for the keeper too (`want`): in the same round, one query tells
which of those leases are free, expired or held by a dead process of this host, and just their workers are woken
to take them (instead of each worker trying every lock_ttl/3).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from sqlalchemy import select, tuple_, update

from maild.clock import utcnow
from maild.health import WorkerHealth
from maild.store.checkpoints import FolderRef, is_dead_local_process
from maild.store.db import Database
from maild.store.models import FolderCheckpoint
from maild.wakeup import Wakeup

log = logging.getLogger("maild.ingest")

_cp = FolderCheckpoint.__table__


class LeaseKeeper:
    def __init__(self, db: Database, owner: str, ttl: float) -> None:
        self.db = db
        self.owner = owner
        self.ttl = ttl
        self.interval = ttl / 3
        self.health = WorkerHealth("ingest leases")
        self._lock = threading.Lock()
        self._holds: dict[FolderRef, tuple[float, Wakeup | None]] = {}
        self._wanted: dict[FolderRef, Wakeup] = {}

    def hold(self, ref: FolderRef, until: float, wake: Wakeup | None = None) -> None:
        """Keep the folder's lease while its worker waits, until the monotonic time `until` (when it promised to
        be back); `wake` is set if the lease turns out to be another daemon's."""
        with self._lock:
            self._holds[ref] = (until, wake)

    def drop(self, ref: FolderRef) -> None:
        """The worker is back (it renews the lease itself while it works)."""
        with self._lock:
            self._holds.pop(ref, None)

    def want(self, ref: FolderRef, wake: Wakeup) -> None:
        """Another daemon holds the folder: set `wake` once its lease may be taken."""
        with self._lock:
            self._wanted[ref] = wake

    def unwant(self, ref: FolderRef) -> None:
        with self._lock:
            self._wanted.pop(ref, None)

    def run(self, stop: threading.Event) -> None:
        """Renew every `interval` seconds until `stop` is set (a failed round is retried at the next)."""
        while not stop.wait(self.interval):
            try:
                self.renew()
                self.offer()
                self.health.ok()
            except Exception as exc:
                log.warning("could not renew folder leases", extra={"fields": {"error": str(exc)}})
                self.health.failed(exc, self.interval)

    def renew(self) -> int:
        """One round: extend the leases of the workers whose word still stands; return how many were renewed."""
        now = time.monotonic()
        with self._lock:
            waiting = {ref: wake for ref, (until, wake) in self._holds.items() if until > now}
        if not waiting:
            return 0
        rows = tuple_(_cp.c.source_id, _cp.c.folder).in_([(ref.source_id, ref.folder) for ref in waiting])
        with self.db.engine.begin() as conn:
            renewed = conn.execute(update(_cp).where(rows, _cp.c.lock_owner == self.owner)
                                   .values(lock_expires_at=utcnow() + timedelta(seconds=self.ttl))).rowcount
            if renewed != len(waiting):
                ours = {(source_id, folder) for source_id, folder in conn.execute(
                    select(_cp.c.source_id, _cp.c.folder).where(rows, _cp.c.lock_owner == self.owner))}
                for ref, wake in waiting.items():
                    if (ref.source_id, ref.folder) not in ours and wake is not None:
                        log.warning("folder lease taken by another daemon", extra={"fields": {
                            "worker": f"{ref.source_name}/{ref.folder}"}})
                        wake.set()
        return renewed

    def offer(self) -> int:
        """Wake the workers waiting for a folder whose lease is free, expired, or held by a dead process of this
        host; return how many were woken."""
        with self._lock:
            wanted = dict(self._wanted)
        if not wanted:
            return 0
        rows = tuple_(_cp.c.source_id, _cp.c.folder).in_([(ref.source_id, ref.folder) for ref in wanted])
        with self.db.engine.connect() as conn:
            leases = {(source_id, folder): (owner, expires) for source_id, folder, owner, expires in conn.execute(
                select(_cp.c.source_id, _cp.c.folder, _cp.c.lock_owner, _cp.c.lock_expires_at).where(rows))}
        now = utcnow()
        woken = 0
        for ref, wake in wanted.items():
            owner, expires = leases.get((ref.source_id, ref.folder), (None, None))
            if owner is None or owner == self.owner or _expired(expires, now) or is_dead_local_process(owner):
                wake.set()
                woken += 1
        return woken


def _expired(expires: datetime | None, now: datetime) -> bool:
    if expires is None:
        return True
    return (expires if expires.tzinfo else expires.replace(tzinfo=now.tzinfo)) < now
