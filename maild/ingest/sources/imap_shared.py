"""An IMAP account's shared connection: the folders beyond its `max_connections`, visited in turn.

Every `ingest.poll_interval` (sooner when a rule or a triage assignment planned filing for one of them) the
poller takes each folder's lease and asks `STATUS folder (UIDNEXT UIDVALIDITY MESSAGES)`; only when that changed
since the folder's last full pass under this lease, or filing waits, does it run the folder's pass over the shared
connection: `ImapFolderWorker.sync`, the same pass a folder with its own connection runs (checkpoint and lease
fence, UIDVALIDITY resync, oversized streaming, filing and refiles). A folder's own error (the server refuses the
folder, a full disk, a lost lease) is recorded on it and retried after its backoff while the others go on; a
connection error ends the round, is recorded on every folder and the connection is opened again after a backoff.
The connection is open only while this daemon holds one of the folders' leases.
"""

from __future__ import annotations

import logging
import threading
import time

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from maild.backoff import ReconnectBackoff
from maild.config import ImapSourceConfig
from maild.filing.runner import CONNECTION_ERRORS, folders_with_pending
from maild.health import WorkerHealth
from maild.imap.connection import connect, quietly_logout, unselect
from maild.imap.limits import shared_connection_name
from maild.ingest.context import IngestContext
from maild.ingest.sources.imap import ImapFolderWorker
from maild.store import checkpoints
from maild.wakeup import wait_for_wakeup

log = logging.getLogger("maild.ingest")

STATUS_ITEMS = [b"UIDVALIDITY", b"UIDNEXT", b"MESSAGES"]
LOST_CONNECTION: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, LoginError)


class FolderErrors(Exception):
    """`run_once`: some folders failed (each error recorded on its folder); the others were ingested."""

    def __init__(self, handled: int, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{label}: {error}" for label, error in errors.items()))
        self.handled = handled
        self.errors = errors


class SharedImapPoller:
    def __init__(self, ctx: IngestContext, cfg: ImapSourceConfig, folders: list[ImapFolderWorker]) -> None:
        self.ctx = ctx
        self.cfg = cfg
        self.folders = folders
        self.label = f"{cfg.name} (shared connection)"
        self.health = WorkerHealth(shared_connection_name(cfg.name))
        self.first_pass = threading.Event()  # every folder visited (or tried) once after start
        self.backoff = ReconnectBackoff(ctx.settings.reconnect_max_delay, ctx.settings.login_retry_max_delay)
        self.client: IMAPClient | None = None
        self._held: set[str] = set()  # folders whose lease this daemon holds
        self._synced: dict[str, tuple[int, int, int]] = {}  # folder -> its STATUS before its last full pass
        self._retry_at: dict[str, float] = {}  # folder -> when to try again after an error of its own

    # --- maild run --------------------------------------------------------------------------
    def run(self) -> None:
        """Supervised loop: a round over the folders every poll_interval; returns only when stopped."""
        stop = self.ctx.stop
        while not stop.is_set():
            try:
                while not stop.is_set():
                    self._round()
                    self.backoff.succeeded()
                    self.health.ok()
                    self.first_pass.set()
                    self._wait()
            except Exception as exc:
                delay = self.backoff.failed_after(self.client is not None, slow=isinstance(exc, LoginError))
                self.record_error(exc, retry_in=delay)
                self.health.failed(exc, delay)
                self.first_pass.set()  # tried: an unreachable server must not hold up the rest
                self._let_go()
                stop.wait(delay)
        self._let_go()

    def _round(self) -> None:
        pending = self._pending()
        for folder in self.folders:
            if self.ctx.stop.is_set():
                return
            if time.monotonic() >= self._retry_at.get(folder.ref.folder, 0.0):
                self._visit(folder, folder.ref.folder in pending)
            self._renew_held()
        if not self._held:  # another daemon ingests all of them: no connection to keep
            self._disconnect()

    def _visit(self, folder: ImapFolderWorker, filing_waits: bool) -> None:
        name = folder.ref.folder
        if not folder.take_lease():
            self._forget(name)
            folder.health.ok()
            folder.first_pass.set()
            return
        self._held.add(name)
        client = self._connection()  # its errors are the connection's: they end the round
        try:
            self._sync_if_changed(folder, client, filing_waits)
        except LOST_CONNECTION:
            raise
        except Exception as exc:
            delay = folder.backoff.failed_after(True)
            folder.record_error(exc, retry_in=delay)
            folder.health.failed(exc, delay)
            self._retry_at[name] = time.monotonic() + delay
            self._forget(name)
            folder.release_lease()
        else:
            folder.backoff.succeeded()
            folder.health.ok()
            self._retry_at.pop(name, None)
        folder.first_pass.set()

    def _sync_if_changed(self, folder: ImapFolderWorker, client: IMAPClient, filing_waits: bool) -> int:
        """STATUS, and the folder's pass only when the folder changed since its last one or filing waits."""
        name = folder.ref.folder
        info = client.folder_status(name, STATUS_ITEMS)
        now = (int(info[b"UIDVALIDITY"]), int(info.get(b"UIDNEXT", 0)), int(info.get(b"MESSAGES", 0)))
        if self._synced.get(name) == now and not filing_waits:
            return 0
        self._synced.pop(name, None)
        handled = folder.sync(client)
        unselect(client, name)  # else the next STATUS of this folder answers from this session's stale view
        if not self.ctx.stop.is_set():  # a pass cut short by the stop flag is not a full one
            self._synced[name] = now
        return handled

    def _wait(self) -> None:
        """Until the next round: poll_interval, or sooner when one of the held folders is woken. Each held folder
        waits as a folder worker does (`FolderWorker.waiting`): the daemon's lease keeper keeps its lease, and its
        filing watcher (filing planned) or the keeper (the lease taken by another daemon) wakes it."""
        deadline = time.monotonic() + self.ctx.settings.poll_interval
        held = [folder for folder in self.folders if folder.ref.folder in self._held]
        for folder in held:
            folder.wake.clear()
        wakeups = [self.ctx.stop.wakeup, *(folder.wake for folder in held)]
        try:
            while not self.ctx.stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                step = min((folder.waiting(remaining) for folder in held), default=remaining)
                if wait_for_wakeup(wakeups, step):
                    return
        finally:
            for folder in held:
                folder.back_from_waiting()

    def _pending(self) -> set[str]:
        """Held folders with filing tasks waiting (a rule's move, a triage assignment)."""
        if self.ctx.matching is None or not self._held:
            return set()
        source_id = self.folders[0].ref.source_id
        return {folder for source, folder in folders_with_pending(self.ctx.db)
                if source == source_id and folder in self._held}

    def _renew_held(self) -> None:
        for folder in self.folders:
            if folder.ref.folder in self._held:
                try:
                    folder.renew_lease_if_due()
                except Exception as exc:  # LeaseLost: another daemon has it now; a database error: retried next time
                    log.info("folder lease not renewed", extra={"fields": {"worker": folder.label,
                                                                           "error": str(exc)}})
                    self._forget(folder.ref.folder)

    def _forget(self, name: str) -> None:
        self._held.discard(name)
        self._synced.pop(name, None)

    # --- maild ingest --once ----------------------------------------------------------------------
    def run_once(self) -> int:
        """One pass over every folder, in turn over one connection; folder errors are raised together at the end
        (FolderErrors), after the other folders' passes; connection errors at once."""
        handled = 0
        errors: dict[str, str] = {}
        try:
            for folder in self.folders:
                try:
                    folder.take_lease_or_fail()
                    handled += folder.sync(self._connection())
                except LOST_CONNECTION:
                    raise
                except Exception as exc:
                    errors[folder.label] = f"{type(exc).__name__}: {exc}"
                    folder.record_error(exc, retry_in=0)
                finally:
                    folder.release_lease()
        finally:
            self._disconnect()
        if errors:
            raise FolderErrors(handled, errors)
        return handled

    # --- the connection -----------------------------------------------------------------------------
    def _connection(self) -> IMAPClient:
        if self.client is None:
            self.client = connect(self.cfg, self.ctx.base_dir)
            if self.folders:
                self.folders[0].match()  # anything a crash or an error left undecided (once per connection)
        return self.client

    def _disconnect(self) -> None:
        if self.client is not None:
            quietly_logout(self.client)
            self.client = None

    def _let_go(self) -> None:
        """Close the connection and give back every lease: another daemon may take the folders meanwhile."""
        self._disconnect()
        for folder in self.folders:
            if folder.ref.folder in self._held:
                folder.release_lease()
        self._held.clear()
        self._synced.clear()

    def record_error(self, exc: BaseException, retry_in: float) -> None:
        """A connection error: logged once, recorded on every folder of the shared connection (status shows it
        per folder)."""
        text = f"{type(exc).__name__}: {exc}"
        log.warning("shared connection error; reconnecting", extra={"fields": {
            "worker": self.label, "folders": len(self.folders), "error": text, "retry_in": f"{retry_in:.1f}s"}})
        for folder in self.folders:
            folder.health.failed(exc, retry_in)
            try:
                checkpoints.record_error(self.ctx.db, folder.ref, text)
            except Exception as db_exc:
                log.warning("could not record the error: %s", db_exc)
                return
