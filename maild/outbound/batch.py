"""Many mails at once: prepared in worker processes, queued with one sync and one transaction.

`prepare_many` does for each request what `prepare` does (recipients and invoices looked up with one query
per table for the whole chunk), in a `PreparePool` of processes when given one; a worker also writes the chunk's
blobs and syncs them once. The tracked links are not stored there: `queue_many` stores them, with the
tracking ids and the outbox rows, in one transaction after the blobs are on disk (synced by the worker,
or once by `queue_many`), so a mail is queued together with everything it needs or not at all.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from maild.config import Config
from maild.ingest.parser_pool import _child_init
from maild.outbound.mailing import TemplateSetup, build, load_invoices, refuse_undeliverable
from maild.outbound.prepared import MailRequest, PreparedMail
from maild.outbound.queueing import Queued, queue_many
from maild.outbound.recipients import resolve_recipients
from maild.store.blobs import BlobStore
from maild.store.db import Database

CHUNK = 25  # requests per task handed to a worker process
STARTUP_TIMEOUT = 120.0  # seconds the pool's processes have to start (a BrokenBarrierError past it)

__all__ = ["PreparePool", "Queued", "prepare_chunk", "prepare_many", "queue_many"]


def prepare_chunk(config: Config, db: Database, requests: Sequence[MailRequest]) -> list[PreparedMail]:
    """Prepare each request (raises on the first that fails, like `prepare`); links left to `queue_many`."""
    recipients = resolve_recipients(db, [request.to for request in requests])
    refuse_undeliverable(db, requests, recipients)
    invoices = load_invoices(db, [request.invoice_ref for request in requests if request.invoice_ref])
    setups: dict[str, TemplateSetup] = {}
    mails = []
    for request, recipient in zip(requests, recipients, strict=True):
        setup = setups.get(request.template) or setups.setdefault(request.template,
                                                                   TemplateSetup(config, request.template))
        mails.append(build(config, db, request, recipient, setup, invoices))
    return mails


_worker: dict[str, Any] = {}


def _init_worker(config: Config, started: Any) -> None:
    _child_init()
    _worker["config"] = config
    _worker["db"] = None
    _worker["started"] = started


def _prepare_in_worker(requests: Sequence[MailRequest]) -> list[PreparedMail]:
    """Prepare a chunk, then write and sync its blobs here, off the queueing process: blobs are
    content-addressed and written atomically, so writing one early (or twice) is harmless, and the sync
    makes them durable before `queue_many` can commit a row naming them."""
    config = _worker["config"]
    if _worker["db"] is None:
        _worker["db"] = Database(config.database_url)  # this process's own connections
    mails = prepare_chunk(config, _worker["db"], requests)
    blobs = BlobStore(config.blob_dir)
    for mail in mails:
        blobs.put(mail.raw)
    blobs.flush()
    for mail in mails:
        mail.durable = True
    return mails


def _pid(_: int) -> int:
    """One per process: each waits until every process holds one (a process runs one task at a time)."""
    _worker["started"].wait(STARTUP_TIMEOUT)
    return os.getpid()


class PreparePool:
    """Worker processes that prepare mails (render, PDF, links, compose) beside the sender's event loop.

    Forked at construction and started at once: create it before starting threads.
    """

    def __init__(self, config: Config, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        context = multiprocessing.get_context("fork")
        started = context.Barrier(self.workers)  # not a sleep: a loaded machine may let one process take them all
        self._executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker,
                                             initargs=(config, started))
        self.pids = sorted(set(self._executor.map(_pid, range(self.workers))))

    def submit(self, requests: Sequence[MailRequest]) -> Future[list[PreparedMail]]:
        return self._executor.submit(_prepare_in_worker, list(requests))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> PreparePool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def prepare_many(config: Config, db: Database, requests: Sequence[MailRequest],
                 pool: PreparePool | None = None) -> list[PreparedMail]:
    """`prepare` for many requests, in order; in `pool`'s processes (chunks of CHUNK) when given."""
    if pool is None:
        return prepare_chunk(config, db, requests)
    futures = [pool.submit(requests[i:i + CHUNK]) for i in range(0, len(requests), CHUNK)]
    return [mail for future in futures for mail in future.result()]
