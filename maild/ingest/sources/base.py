"""The loop every folder worker runs: take the folder's lease, sync, wait for change; never die.

Errors of any kind (server gone, BYE, bad password, database busy) are recorded on the folder's
checkpoint for `maild status`, logged, and followed by a reconnect after a capped, jittered backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

from imapclient.exceptions import LoginError

from maild.backoff import ReconnectBackoff
from maild.health import WorkerHealth
from maild.ingest.context import IngestContext
from maild.ingest.pipeline import Ack, Batch, ParsedBatch
from maild.ingest.store import Fetched, Outcome, Result
from maild.profiling import profiled
from maild.store import checkpoints
from maild.store.checkpoints import FolderRef
from maild.wakeup import Wakeup, wait_for_wakeup

log = logging.getLogger("maild.ingest")


LEASE_WAIT_LIMIT = 10  # in lock_ttls: the longest a worker waits for another daemon's lease without being woken


class LeaseBusy(Exception):
    """The folder stayed claimed by another live daemon."""


class IngestWorker(Protocol):
    """What the daemon runs and supervises: a folder worker, or an account's shared polling connection."""

    label: str
    health: WorkerHealth
    first_pass: threading.Event

    def run(self) -> None: ...

    def run_once(self) -> int: ...

    def record_error(self, exc: BaseException, retry_in: float) -> None: ...


class FolderWorker(ABC):
    files_while_waiting = False  # whether filing planned for the folder should end this worker's wait

    def __init__(self, ctx: IngestContext, ref: FolderRef) -> None:
        self.ctx = ctx
        self.ref = ref
        self.label = f"{ref.source_name}/{ref.folder}" if ref.folder else ref.source_name
        self._last_renew = 0.0
        self._waiting_for_lease = False
        # Set once the folder was synced (or tried) after start: the rules' catch-up sweep waits for it.
        self.first_pass = threading.Event()
        self.wake = Wakeup()  # set to end this worker's wait early (filing planned for its folder, lease lost)
        self.health = WorkerHealth(f"ingest {self.label}")
        self.backoff = ReconnectBackoff(ctx.settings.reconnect_max_delay, ctx.settings.login_retry_max_delay)

    # --- what a source implements -------------------------------------------------------------
    @abstractmethod
    def open(self) -> None:
        """Connect / check the folder exists. Raise with a clear message when it cannot."""

    @abstractmethod
    def sync_once(self) -> int:
        """Ingest everything new in the folder; return how many messages were handled."""

    @abstractmethod
    def wait_for_change(self) -> None:
        """Block until new mail may be there, the stop flag is set, or it is time to look anyway."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; must not raise."""

    # --- shared machinery ---------------------------------------------------------------------
    def run(self) -> None:
        """Supervised loop for `maild run`: returns only when the stop flag is set.

        Waits between tries follow `ReconnectBackoff` (maild/backoff.py): capped at `reconnect_max_delay`
        (`login_retry_max_delay` after a refused login), reset as soon as the source and the database answer
        again after an outage (a reconnect, then the folder's lease), not after a whole pass.
        """
        stop = self.ctx.stop
        while not stop.is_set():
            connected = False
            try:
                # The lease first: a folder another daemon ingests costs this one no connection to the source.
                if not self.take_lease():
                    self.health.ok()
                    self.first_pass.set()  # another daemon ingests this folder
                    self.wait_for_lease()
                    continue
                try:
                    self.open()
                    while not stop.is_set():
                        if not self.take_lease():  # taken over meanwhile: close the connection, wait without it
                            break
                        connected = True
                        if self.backoff.connected():  # back after an outage: running again, not after a pass
                            self.health.ok()
                        self.wake.clear()  # whatever woke the worker is looked at in this pass
                        self.sync_once()
                        self.backoff.succeeded()
                        self.health.ok()
                        self.first_pass.set()
                        self.wait_for_change()
                finally:
                    self.close()
                    self.release_lease()
            except Exception as exc:
                delay = self.backoff.failed_after(connected, slow=isinstance(exc, LoginError))
                self.record_error(exc, retry_in=delay)
                self.health.failed(exc, delay)
                self.first_pass.set()  # tried: an unreachable server must not hold up the rest
                stop.wait(delay)

    def run_once(self) -> int:
        """One pass for `maild ingest --once`; errors propagate to the caller.

        When another daemon holds the folder, wait for its lease (at most one TTL and a bit):
        a lease left by a crashed daemon expires, a live daemon's pass is then simply repeated.
        """
        try:
            self.take_lease_or_fail()  # first: no connection is held while another daemon's pass runs
            self.open()
            with profiled(f"ingest-{self.ref.source_name}"):
                return self.sync_once()
        finally:
            self.close()
            self.release_lease()

    def take_lease_or_fail(self) -> None:
        """Take the folder's lease, waiting at most one TTL and a bit for another daemon's; else LeaseBusy."""
        deadline = time.monotonic() + self.ctx.settings.lock_ttl * 1.5
        while not self.take_lease():
            if time.monotonic() > deadline or self.ctx.stop.is_set():
                owner, _ = checkpoints.lease_holder(self.ctx.db, self.ref)
                raise LeaseBusy(f"another daemon ({owner}) keeps ingesting this folder; try again later")
            self.ctx.stop.wait(1.0)

    def take_lease(self) -> bool:
        ttl = self.ctx.settings.lock_ttl
        held = checkpoints.acquire_lease(self.ctx.db, self.ref, self.ctx.owner, ttl) or \
            checkpoints.take_over_dead_lease(self.ctx.db, self.ref, self.ctx.owner, ttl)
        if not held and not self._waiting_for_lease:
            owner, _ = checkpoints.lease_holder(self.ctx.db, self.ref)
            log.info("another daemon holds this folder; waiting",
                     extra={"fields": {"worker": self.label, "owner": owner}})
        self._waiting_for_lease = not held
        self._last_renew = time.monotonic()
        return held

    def renew_lease_if_due(self) -> None:
        if time.monotonic() - self._last_renew > self.ctx.settings.lock_ttl / 3:
            with self.ctx.db.engine.begin() as conn:
                checkpoints.renew_lease(conn, self.ref, self.ctx.owner, self.ctx.settings.lock_ttl)
            self._last_renew = time.monotonic()

    def wait_for_lease(self) -> None:
        """Another daemon holds the folder: wait until its lease may be free (the daemon's lease keeper looks for
        all such folders in one query and wakes their workers; without it, try again after lock_ttl/3)."""
        leases, ttl = self.ctx.leases, self.ctx.settings.lock_ttl
        if leases is None:
            self.ctx.stop.wait(ttl / 3)
            return
        self.wake.clear()
        leases.want(self.ref, self.wake)
        try:
            wait_for_wakeup(self.wakeups(), LEASE_WAIT_LIMIT * ttl)
        finally:
            leases.unwant(self.ref)

    def sleep_renewing(self, seconds: float) -> None:
        """Wait up to `seconds` (less if stopped or woken: filing planned, lease lost), the lease kept meanwhile."""
        deadline = time.monotonic() + seconds
        try:
            while not self.interrupted():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                wait_for_wakeup(self.wakeups(), self.waiting(remaining))
        finally:
            self.back_from_waiting()

    def wakeups(self) -> list[Wakeup]:
        """What ends a wait early: the daemon's stop, and this worker's own wake-up."""
        return [self.ctx.stop.wakeup, self.wake]

    def interrupted(self) -> bool:
        return self.ctx.stop.is_set() or self.wake.is_set()

    def waiting(self, seconds: float) -> float:
        """About to wait up to `seconds`: hand the lease to the daemon's keeper and tell its filing watcher (or,
        without them, renew the lease now); return how long this wait may be."""
        leases, watcher = self.ctx.leases, self.ctx.filing_watch
        if watcher is not None and self.files_while_waiting and self.ctx.matching is not None:
            watcher.watch(self.ref, self.wake)
        if leases is None:
            self.renew_lease_if_due()
            return min(seconds, self.ctx.settings.lock_ttl / 3)
        leases.hold(self.ref, time.monotonic() + seconds, self.wake)
        return seconds

    def back_from_waiting(self) -> None:
        """The wait is over: the worker keeps its lease itself again while it works."""
        if self.ctx.leases is not None:
            self.ctx.leases.drop(self.ref)
        if self.ctx.filing_watch is not None:
            self.ctx.filing_watch.forget(self.ref)

    def release_lease(self) -> None:
        try:
            checkpoints.release_lease(self.ctx.db, self.ref, self.ctx.owner)
        except Exception as exc:  # the lease expires by itself; never let cleanup kill the loop
            log.debug("could not release lease: %s", exc)

    def ack(self, last_uid: int | None = None) -> Ack:
        return Ack(owner=self.ctx.owner, ttl=self.ctx.settings.lock_ttl, last_uid=last_uid)

    def commit(self, batch: Batch, last_uid: int | None = None) -> list[Result]:
        results = self.ctx.pipeline.commit(self.ref, batch, self.ack(last_uid))
        self._last_renew = time.monotonic()
        self.match([r.message_id for r in results if r.outcome == Outcome.STORED and r.message_id])
        return results

    def match(self, message_ids: list[int] | None = None) -> None:
        """Decide new messages now; a failure here only delays them (they stay pending for the next pass)."""
        if self.ctx.matching is None:
            return
        try:
            if message_ids is None:
                self.ctx.matching.run_all()
            else:
                self.ctx.matching.run(message_ids)
        except Exception as exc:
            log.warning("matching failed; will retry", extra={"fields": {"worker": self.label, "error": str(exc)}})

    def start(self, items: Sequence[Fetched]) -> ParsedBatch:
        return self.ctx.pipeline.start(items)

    def report_progress(self, done: int, waiting: int) -> None:
        if self.ctx.progress is not None:
            self.ctx.progress(self.label, done, waiting)

    def record_error(self, exc: BaseException, retry_in: float) -> None:
        text = f"{type(exc).__name__}: {exc}"
        log.warning("source error; reconnecting", extra={"fields": {
            "worker": self.label, "error": text, "retry_in": f"{retry_in:.1f}s"}})
        try:
            checkpoints.record_error(self.ctx.db, self.ref, text)
        except Exception as db_exc:
            log.warning("could not record the error: %s", db_exc)
