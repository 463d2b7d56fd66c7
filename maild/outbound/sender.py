"""The sending loop: claim due outbox rows, hand them to a transport, record each outcome.

A TempFail after DATA began (dropped connection, timeout waiting for the final reply) may have been
delivered: it is failed with the "interrupted" reason, never retried automatically (at most once).

Bookkeeping per pass (`_Pass`), in few transactions: when the first of a run of rows is about to begin
DATA, one transaction marks it and the next DATA_START_WINDOW - 1 claimed rows as data-started (always
committed before any of their DATA begins), and records the deliveries since the last transaction as
sent; a delivery waits at most SENT_FLUSH_SECONDS for such a transaction (else one of its own) and the
pass ends with one. The price of a kill -9: the rows of the current window that were marked but not yet
sent, and the deliveries of the last SENT_FLUSH_SECONDS, are failed as "interrupted" by `recover_stale`
for a person to check (`maild outbox retry`): never sent twice automatically, never silently dropped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imapclient
from imapclient.imapclient import SEEN, SENT

from maild.config import Config, ConfigError, resolve_path
from maild.imap_folders import find_special_folder
from maild.outbound import outbox
from maild.outbound.smtp import Delivered, FileTransport, PermFail, SmtpTransport, TempFail, Transport
from maild.own_mail import OwnMail
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.store.models import OutboxMessage

log = logging.getLogger("maild.outbound")

SentFolder = Callable[[bytes], Any]
RECOVER_EVERY = 30.0
SENT_FOLDER_SWEEP_EVERY = 60.0
DATA_START_WINDOW = 16
SENT_FLUSH_SECONDS = 0.02


class _Pass:
    """One send_due pass's data-start marks (committed ahead, a window at a time) and sent marks (grouped)."""

    def __init__(self, db: Database, owner: str, rows: list[OutboxMessage], window: int = DATA_START_WINDOW) -> None:
        self.db = db
        self.owner = owner
        self.window = window
        self.order = [row.id for row in rows if row.id is not None]
        self.position = {row_id: index for index, row_id in enumerate(self.order)}
        self.asked: set[int] = set()  # rows some mark transaction included
        self.marked: set[int] = set()  # rows durably marked data-started while still ours
        self.done: set[int] = set()  # rows whose outcome is known (no mark for them any more)
        self._sent: list[tuple[int, str]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._error: BaseException | None = None

    def data_started(self, outbox_id: int) -> None:
        """Called right before DATA: returns once that is committed; raises ClaimLost if the row is not ours."""
        if outbox_id not in self.asked:
            start = self.position[outbox_id]
            ahead = [i for i in self.order[start + 1:] if i not in self.asked and i not in self.done]
            window = [outbox_id, *ahead[:self.window - 1]]
            self.asked.update(window)
            self._cancel_timer()
            sent, self._sent = self._sent, []
            try:
                self.marked |= outbox.mark_data_started_many(self.db, window, self.owner, sent)
            except BaseException:
                self._sent[:0] = sent  # not recorded: still pending
                raise
        if outbox_id not in self.marked:
            raise outbox.ClaimLost(f"outbox row {outbox_id} is no longer claimed by {self.owner}")

    def sent(self, outbox_id: int, reply: str) -> None:
        self.done.add(outbox_id)
        self._sent.append((outbox_id, reply))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(SENT_FLUSH_SECONDS, self._flush)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _flush(self) -> None:
        self._timer = None
        batch, self._sent = self._sent, []
        if not batch:
            return
        try:
            outbox.mark_sent_many(self.db, batch)
        except Exception as exc:  # the rows stay `sending` with DATA begun: recover_stale fails them visibly
            log.exception("could not record %d sent mails", len(batch))
            self._error = self._error or exc

    def finish(self) -> None:
        """Record what is still pending; re-raise a failure to record (the pass then fails visibly)."""
        self._cancel_timer()
        self._flush()
        if self._error is not None:
            raise self._error


class OutboxSender:
    def __init__(self, db: Database, blobs: BlobStore, transport: Transport, owner: str,
                 sent_folder: SentFolder | None = None, *, max_attempts: int = 8, retry_max_delay: float = 3600.0,
                 lease_seconds: float = 900.0, concurrency: int = 4,
                 internal: Callable[[list[str]], bool] | None = None) -> None:
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

    async def send_due(self, limit: int = 100) -> dict[str, int]:
        """One pass: claim up to `limit` due rows and send them, at most `concurrency` at a time."""
        counts = {"sent": 0, "retry": 0, "failed": 0}
        rows = outbox.claim(self.db, self.owner, limit, self.lease_seconds)
        if not rows:
            return counts
        gate = asyncio.Semaphore(self.concurrency)
        batch = _Pass(self.db, self.owner, rows)

        async def one(row: OutboxMessage) -> None:
            async with gate:
                outcome = await self._send_one(row, batch)
                if outcome:
                    counts[outcome] += 1

        try:
            await asyncio.gather(*(one(row) for row in rows))
        finally:
            batch.finish()
        return counts

    async def _send_one(self, row: OutboxMessage, batch: _Pass | None = None) -> str:
        """Send one claimed row; its marks go with `batch`'s (a pass of its own if None)."""
        if batch is not None:
            return await self._send(row, batch)
        single = _Pass(self.db, self.owner, [row])
        try:
            return await self._send(row, single)
        finally:
            single.finish()

    async def _send(self, row: OutboxMessage, batch: _Pass) -> str:
        assert row.id is not None
        outbox_id = row.id
        try:
            raw = self.blobs.get(row.raw_sha256)
        except OSError as exc:
            batch.done.add(outbox_id)
            outbox.mark_failed(self.db, outbox_id, f"raw message missing from the blob store: {exc}", owner=self.owner)
            return "failed"
        started = False

        def on_data_started(which: int) -> None:
            nonlocal started
            batch.data_started(which)  # raises ClaimLost: the transport aborts
            started = True

        try:
            result = await self.transport.send(outbox_id, row.sender, row.recipients, raw, on_data_started)
        except outbox.ClaimLost as exc:
            batch.done.add(outbox_id)
            log.warning("not sent: %s", exc, extra={"fields": {"outbox_id": outbox_id}})
            return ""
        except Exception as exc:  # a transport bug must not leave the row claimed until the lease runs out
            log.exception("transport failed unexpectedly", extra={"fields": {"outbox_id": outbox_id}})
            result = TempFail(f"{type(exc).__name__}: {exc}")
        fields = {"outbox_id": outbox_id, "key": row.idempotency_key}
        if isinstance(result, Delivered):
            batch.sent(outbox_id, result.reply)
            log.info("sent", extra={"fields": {**fields, "reply": result.reply}})
            if self.sent_folder is not None:
                batch.finish()  # the Sent copy follows the recorded delivery
                if self.internal(list(row.recipients or [])):  # a notice to one of us: not the customers' Sent
                    outbox.mark_sent_folder_done(self.db, outbox_id)
                else:
                    await self._copy_to_sent(outbox_id, raw)
            return "sent"
        batch.done.add(outbox_id)
        if isinstance(result, PermFail):
            outbox.mark_failed(self.db, outbox_id, result.reason, result.reply, owner=self.owner)
            log.warning("refused: %s", result.reason, extra={"fields": fields})
            return "failed"
        if started:
            outbox.mark_failed(self.db, outbox_id, f"{outbox.INTERRUPTED} ({result.reason})", owner=self.owner)
            log.warning("interrupted after DATA began: %s", result.reason, extra={"fields": fields})
            return "failed"
        status = outbox.mark_retry(self.db, outbox_id, result.reason, max_attempts=self.max_attempts,
                                   max_delay=self.retry_max_delay, owner=self.owner)
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
        """Send until `stop` is set: poll every `poll` seconds; recover stale claims at start and periodically."""
        last_recover = last_sweep = float("-inf")
        try:
            while not stop.is_set():
                now = time.monotonic()
                if now - last_recover >= RECOVER_EVERY:
                    recovered = outbox.recover_stale(self.db)
                    if any(recovered.values()):
                        log.warning("recovered stale outbox claims", extra={"fields": recovered})
                    last_recover = now
                if now - last_sweep >= SENT_FOLDER_SWEEP_EVERY:
                    await self.sweep_sent_folder()
                    last_sweep = now
                try:
                    counts = await self.send_due(limit)
                except Exception:
                    log.exception("outbox pass failed")
                    counts = {}
                if sum(counts.values()) >= limit:
                    continue  # more may be due right away
                await asyncio.sleep(poll)
        finally:
            await self.transport.close()


def sent_folder_append(imap_client: imapclient.IMAPClient, raw: bytes) -> str:
    """APPEND `raw` (flagged \\Seen) to the folder with SPECIAL-USE \\Sent; returns that folder's name."""
    folder = find_special_folder(imap_client, SENT)
    if folder is None:
        raise LookupError("the IMAP account has no folder with SPECIAL-USE \\Sent")
    imap_client.append(folder, raw, flags=[SEEN])
    return folder


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
    from maild.ingest.sources.imap import connect, quietly_logout

    source = next((s for s in config.sources if s.name == name), None)
    if not isinstance(source, ImapSourceConfig):
        raise ConfigError(f"outbound.sent_folder_source: no IMAP source named {name!r}")
    def append(raw: bytes) -> str:
        client = connect(source, Path(config.base_dir))
        try:
            return sent_folder_append(client, raw)
        finally:
            quietly_logout(client)

    return append


def build_sender(config: Config, db: Database, owner: str) -> OutboxSender:
    cfg = config.outbound.transport
    concurrency = cfg.max_connections if cfg.type == "smtp" else 1
    lease = max(300.0, cfg.timeout * 4)
    own = OwnMail.from_config(config)
    return OutboxSender(db, BlobStore(config.blob_dir), build_transport(config), owner, build_sent_folder(config),
                        max_attempts=cfg.max_attempts, retry_max_delay=cfg.retry_max_delay, lease_seconds=lease,
                        concurrency=concurrency,
                        internal=lambda recipients: bool(recipients) and all(own.is_own(r) for r in recipients))
