"""The sending loop: claim due outbox rows, hand them to a transport, record each outcome.

A TempFail that may have been delivered (dropped connection or timeout once DATA began) makes the row
`ambiguous`, never retried automatically (at most once); a 4xx reply, also one to the end of DATA
(greylisting, a content filter), says "not accepted" and is retried with backoff like any other.

Bookkeeping per pass (`_Pass`): right before a row's DATA, one short transaction (marks.py) marks that row
"DATA began now on connection C" and saves the SMTP replies of the deliveries not yet booked; deliveries are
booked as sent (status, `mail.sent`, attempt record) in groups within SENT_FLUSH_SECONDS and at the end of
the pass. So after a `kill -9` at most one row per open connection has an unknown outcome (its DATA had
begun, or its 250 was not yet saved and the connection's next DATA had not begun): `recover_stale` books the
saved 2xx replies as sent, makes DATA-marked rows without a reply `ambiguous` for a person (`maild outbox
show`, then `retry` or `mark-sent`) and re-sends every other claimed row automatically.

The row's saved reply is the one record of "delivered, not yet booked". A database outage takes the kill -9 path:
the failed pass leaves only the replies the database never took in memory (`OutboxSender.unsaved`); once the
database is back the sender saves them on their rows and recovers its own claims at once with `recover_stale`'s
rules (`outbox.settle_claims`) instead of waiting for them to expire.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maild.backoff import Backoff
from maild.config import Config, ConfigError, resolve_path
from maild.health import WorkerHealth, describe
from maild.imap.sent import sent_folder_append
from maild.outbound import outbox
from maild.outbound.marks import DataStartMarks
from maild.outbound.smtp import Delivered, FileTransport, PermFail, SmtpTransport, TempFail, Transport
from maild.outbound.verp import envelope_sender
from maild.own_mail import OwnMail
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.store.models import OutboxMessage

log = logging.getLogger("maild.outbound")

SentFolder = Callable[[bytes], Any]
RECOVER_EVERY = 30.0
SENT_FOLDER_SWEEP_EVERY = 60.0
SENT_FLUSH_SECONDS = 0.02
RUN_RETRY_MAX_DELAY = 8.0  # cap of the run loop's backoff: sending resumes within seconds of the database's return


class _Pass:
    """One send_due pass's data-start marks (one per row, just before its DATA) and sent marks (grouped).

    A delivery's reply is durable once a mark or a booking committed it; until then it is only in `unsaved`.
    """

    def __init__(self, db: Database, owner: str) -> None:
        self.db = db
        self.owner = owner
        self.marks = DataStartMarks(db)
        self.unsaved: list[tuple[int, str]] = []  # replies of deliveries the database has not taken yet
        self._unbooked: list[tuple[int, str]] = []  # deliveries not yet booked as sent (event, attempt record)
        self._timer: asyncio.TimerHandle | None = None
        self._error: BaseException | None = None

    async def data_started(self, outbox_id: int, connection: str) -> None:
        """Called right before DATA: returns once "DATA begins on `connection`" (and the replies of the
        deliveries so far) is committed; raises ClaimLost if the row is no longer ours."""
        marked = self.marks.mark(outbox_id, self.owner, connection, self.unsaved)
        self.unsaved = []  # committed, also when the row was not ours any more
        if not marked:
            raise outbox.ClaimLost(f"outbox row {outbox_id} is no longer claimed by {self.owner}")

    def sent(self, outbox_id: int, reply: str) -> None:
        self.unsaved.append((outbox_id, reply))
        self._unbooked.append((outbox_id, reply))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(SENT_FLUSH_SECONDS, self.flush)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def flush(self) -> bool:
        """Book the deliveries so far as sent (one transaction); False if booking failed (in this pass)."""
        self._cancel_timer()
        batch, self._unbooked = self._unbooked, []
        if batch:
            try:
                outbox.mark_sent_many(self.db, batch)
            except Exception as exc:  # the rows stay `sending`; the sender settles its claims when the database is back
                log.exception("could not record %d sent mails", len(batch))
                self._error = self._error or exc
            else:
                booked = {row_id for row_id, _ in batch}
                self.unsaved = [item for item in self.unsaved if item[0] not in booked]
        return self._error is None

    def finish(self) -> None:
        """Record what is still pending; re-raise a failure to record (the pass then fails visibly)."""
        try:
            self.flush()
        finally:
            self.marks.close()
        if self._error is not None:
            raise self._error


class OutboxSender:
    def __init__(self, db: Database, blobs: BlobStore, transport: Transport, owner: str,
                 sent_folder: SentFolder | None = None, *, max_attempts: int = 8, retry_max_delay: float = 3600.0,
                 lease_seconds: float = 900.0, concurrency: int = 4, return_path: str | None = None,
                 instance: str = "", internal: Callable[[list[str]], bool] | None = None) -> None:
        """`internal(recipients)`: True for mail only to our own people (an owner notice): no Sent copy."""
        self.db = db
        self.internal = internal or (lambda recipients: False)
        self.blobs = blobs
        self.transport = transport
        self.owner = owner
        self.sent_folder = sent_folder
        self.max_attempts = max_attempts
        self.retry_max_delay = retry_max_delay
        self.lease_seconds = lease_seconds
        self.concurrency = concurrency
        self.health = WorkerHealth("outbox")
        self.unsaved: list[tuple[int, str]] = []  # replies of a failed pass the database has not taken yet
        self.return_path = return_path  # VERP (outbound.return_path): the envelope sender names the row's token
        self.instance = instance

    async def send_due(self, limit: int = 100, on_claim: outbox.Claimed | None = None) -> dict[str, int]:
        """One pass: claim up to `limit` due rows and send them, at most `concurrency` at a time. `on_claim(conn,
        ids)` runs in the claim's transaction (a person's `send-due`: its audit entry)."""
        counts = {"sent": 0, "retry": 0, "failed": 0}
        rows = outbox.claim(self.db, self.owner, limit, self.lease_seconds, on_claim)
        if not rows:
            return counts
        gate = asyncio.Semaphore(self.concurrency)
        batch = _Pass(self.db, self.owner)

        async def one(row: OutboxMessage) -> None:
            async with gate:
                outcome = await self._send_one(row, batch)
                if outcome:
                    counts[outcome] += 1

        try:  # every send ends before the pass does, failed or not: none of its rows is left in flight
            results = await asyncio.gather(*(one(row) for row in rows), return_exceptions=True)
        finally:
            self._end_pass(batch)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
        return counts

    async def _send_one(self, row: OutboxMessage, batch: _Pass | None = None) -> str:
        """Send one claimed row; its marks go with `batch`'s (a pass of its own if None)."""
        if batch is not None:
            return await self._send(row, batch)
        single = _Pass(self.db, self.owner)
        try:
            return await self._send(row, single)
        finally:
            self._end_pass(single)

    def _end_pass(self, batch: _Pass) -> None:
        """Book what is pending; replies the database did not take stay with the sender until `_settle`."""
        try:
            batch.finish()
        finally:
            self.unsaved += batch.unsaved

    async def _send(self, row: OutboxMessage, batch: _Pass) -> str:
        assert row.id is not None
        outbox_id = row.id
        try:
            raw = self.blobs.get(row.raw_sha256)
        except OSError as exc:
            outbox.mark_failed(self.db, outbox_id, f"raw message missing from the blob store: {exc}", owner=self.owner)
            return "failed"
        started = False

        async def on_data_started(which: int, connection: str) -> None:
            nonlocal started
            await batch.data_started(which, connection)  # raises ClaimLost: the transport aborts
            started = True

        try:
            envelope = envelope_sender(self.return_path, self.instance, row.tracking_token, row.sender)
            result = await self.transport.send(outbox_id, envelope, row.recipients, raw, on_data_started)
        except outbox.ClaimLost as exc:
            log.warning("not sent: %s", exc, extra={"fields": {"outbox_id": outbox_id}})
            return ""
        except Exception as exc:  # a transport bug must not leave the row claimed until the lease runs out
            log.exception("transport failed unexpectedly", extra={"fields": {"outbox_id": outbox_id}})
            result = TempFail(f"{type(exc).__name__}: {exc}", maybe_delivered=started)
        fields = {"outbox_id": outbox_id, "key": row.idempotency_key}
        if isinstance(result, Delivered):
            batch.sent(outbox_id, result.reply)
            log.info("sent", extra={"fields": {**fields, "reply": result.reply}})
            if self.sent_folder is not None and batch.flush():  # the Sent copy follows the recorded delivery
                if self.internal(list(row.recipients or [])):  # a notice to one of us: not the customers' Sent
                    outbox.mark_sent_folder_done(self.db, outbox_id)
                else:
                    await self._copy_to_sent(outbox_id, raw)
            return "sent"
        if isinstance(result, PermFail):
            outbox.mark_failed(self.db, outbox_id, result.reason, result.reply, owner=self.owner)
            log.warning("refused: %s", result.reason, extra={"fields": fields})
            return "failed"
        if result.maybe_delivered:
            outbox.mark_ambiguous(self.db, outbox_id, result.reason, owner=self.owner)
            log.warning("interrupted after DATA began: %s", result.reason, extra={"fields": fields})
            return "failed"
        status = outbox.mark_retry(self.db, outbox_id, result.reason, max_attempts=self.max_attempts,
                                   max_delay=self.retry_max_delay, owner=self.owner, reply=result.reply)
        log.info("temporary failure (%s): %s", status or "?", result.reason, extra={"fields": fields})
        return status if status in ("retry", "failed") else ""

    async def _copy_to_sent(self, outbox_id: int, raw: bytes) -> bool:
        if self.sent_folder is None:
            return False
        try:
            await asyncio.to_thread(self.sent_folder, raw)
        except Exception as exc:  # the mail is sent; the copy is retried by the next sweep
            log.warning("could not copy to the Sent folder: %s", exc, extra={"fields": {"outbox_id": outbox_id}})
            return False
        outbox.mark_sent_folder_done(self.db, outbox_id)
        return True

    async def sweep_sent_folder(self, limit: int = 50) -> int:
        """Copy sent mail whose Sent-folder APPEND failed before."""
        if self.sent_folder is None:
            return 0
        done = 0
        for row in outbox.pending_sent_folder(self.db, limit):
            assert row.id is not None
            if self.internal(list(row.recipients or [])):
                outbox.mark_sent_folder_done(self.db, row.id)
                continue
            try:
                raw = self.blobs.get(row.raw_sha256)
            except OSError:
                continue
            if not await self._copy_to_sent(row.id, raw):
                break  # the IMAP server is unreachable: try again at the next sweep
            done += 1
        return done

    async def run(self, stop: threading.Event | asyncio.Event, poll: float = 1.0, limit: int = 50) -> None:
        """Send until `stop` is set: poll every `poll` seconds; recover stale claims at start and periodically.

        Any error of a step (the database gone, a bug) is logged, shown in `self.health` and retried after a
        capped backoff (RUN_RETRY_MAX_DELAY): the loop ends only when `stop` is set. After a failed step, this
        sender's claims are settled as soon as the database takes it (`_settle`).
        """
        last_recover = last_sweep = float("-inf")
        backoff = Backoff(RUN_RETRY_MAX_DELAY)
        settle = False
        try:
            while not stop.is_set():
                try:
                    if settle or self.unsaved:  # nothing of ours is in flight between two passes
                        self._settle()
                        settle = False
                    if time.monotonic() - last_recover >= RECOVER_EVERY:
                        recovered = outbox.recover_stale(self.db)
                        if any(recovered.values()):
                            log.warning("recovered stale outbox claims", extra={"fields": recovered})
                        last_recover = time.monotonic()
                    if time.monotonic() - last_sweep >= SENT_FOLDER_SWEEP_EVERY:
                        await self.sweep_sent_folder()
                        last_sweep = time.monotonic()
                    counts = await self.send_due(limit)
                except Exception as exc:
                    delay = backoff.failed()
                    log.warning("outbox pass failed; retrying", exc_info=True,
                                extra={"fields": {"error": describe(exc), "retry_in": f"{delay:.1f}s"}})
                    self.health.failed(exc, delay)
                    settle = True
                    await _pause(stop, delay)
                    continue
                backoff.reset()
                self.health.ok()
                if sum(counts.values()) >= limit:
                    continue  # more may be due right away
                await _pause(stop, poll)
        finally:
            self.health.stopped()
            await self.transport.close()
            if self.unsaved:
                self._settle_at_stop()

    def _settle(self) -> None:
        """Recover this sender's claims now, the way `recover_stale` recovers a killed sender's: save the replies
        the database did not take, then book the delivered rows, retry those whose DATA never began and make those
        whose DATA began without a recorded outcome `ambiguous`."""
        settled = outbox.settle_claims(self.db, self.owner, self.unsaved)
        self.unsaved = []
        if any(settled.values()):
            log.warning("settled this sender's claims after a failed pass", extra={"fields": settled})

    def _settle_at_stop(self) -> None:
        """A last try to save the replies of a failed pass; if the database still refuses, say which they were (the
        rows will be `ambiguous` for a person, as after a kill -9)."""
        try:
            self._settle()
        except Exception:
            log.exception("stopping with deliveries the database did not take; their rows will be ambiguous",
                          extra={"fields": {"replies": dict(self.unsaved)}})


async def _pause(stop: threading.Event | asyncio.Event, seconds: float) -> None:
    """Sleep up to `seconds`, waking early when `stop` is set."""
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        await asyncio.sleep(min(left, 0.25))


def build_transport(config: Config) -> Transport:
    """The configured transport: SMTP (password or XOAUTH2 token from password_env/password_file, read again for
    each new connection) or .eml files."""
    cfg = config.outbound.transport
    if cfg.type == "file":
        return FileTransport(resolve_path(config.base_dir, cfg.directory))
    cfg.secret(config.base_dir)  # at start: a missing variable or file is a config error, not a retry loop
    ca_file = str(resolve_path(config.base_dir, cfg.ca_file)) if cfg.ca_file else None
    return SmtpTransport(cfg, lambda: cfg.secret(config.base_dir), ca_file=ca_file)


def build_sent_folder(config: Config) -> SentFolder | None:
    """A callable that copies a raw sent mail into the Sent folder of `outbound.sent_folder_source`."""
    name = config.outbound.sent_folder_source
    if not name:
        return None
    from maild.config import ImapSourceConfig
    from maild.imap.connection import session

    source = next((s for s in config.sources if s.name == name), None)
    if not isinstance(source, ImapSourceConfig):
        raise ConfigError(f"outbound.sent_folder_source: no IMAP source named {name!r}")
    def append(raw: bytes) -> str:
        with session(source, Path(config.base_dir)) as client:
            return sent_folder_append(client, raw)

    return append


def build_sender(config: Config, db: Database, owner: str) -> OutboxSender:
    cfg = config.outbound.transport
    concurrency = cfg.max_connections if cfg.type == "smtp" else 1
    lease = max(300.0, cfg.timeout * 4)
    own = OwnMail.from_config(config)
    return OutboxSender(db, BlobStore(config.blob_dir), build_transport(config), owner, build_sent_folder(config),
                        max_attempts=cfg.max_attempts, retry_max_delay=cfg.retry_max_delay, lease_seconds=lease,
                        concurrency=concurrency, return_path=config.outbound.return_path,
                        instance=config.matching.instance_id,
                        internal=lambda recipients: bool(recipients) and all(own.is_own(r) for r in recipients))
