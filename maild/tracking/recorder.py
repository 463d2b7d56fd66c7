"""Writes open/click events for the tracking endpoint: one thread, one transaction per group of hits.

A request hands its hit to `EventRecorder.submit` and answers only once the returned future says the event
is committed (so an answered hit is durable, as before), but hits that arrive together share one look-up
of their tokens and one INSERT transaction. The mails' (outbox id, third party, sent_at) are cached per token
once the mail is sent (none of the three changes after that). Writing from one thread also means the
endpoint never has two of its own write transactions competing for SQLite's single writer.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from maild.clock import as_utc
from maild.config import TrackingConfig
from maild.store.db import Database
from maild.store.models import Event, OutboxMessage
from maild.tracking.classify import is_machine

log = logging.getLogger("maild.tracking")

_outbox, _events = OutboxMessage.__table__, Event.__table__
CACHE_SIZE = 10_000
MAX_GROUP = 500


@dataclass
class Hit:
    event_type: str  # mail.opened | mail.clicked
    kind: str  # "o" | "c" (for the machine classifier)
    token: str
    at: datetime
    user_agent: str | None
    ip: str | None  # as seen (for the classifier)
    stored_ip: str | None  # as recorded (maybe truncated)
    extra: dict[str, Any] = field(default_factory=dict)
    done: Future[bool] = field(default_factory=Future)  # True: recorded, False: no sent mail has this token


class EventRecorder:
    def __init__(self, db: Database, cfg: TrackingConfig) -> None:
        self.db = db
        self.cfg = cfg
        self._queue: queue.SimpleQueue[Hit | None] = queue.SimpleQueue()
        self._mails: OrderedDict[str, tuple[int, int | None, datetime | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, hit: Hit) -> Future[bool]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the event recorder is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="maild-tracking-events", daemon=True)
                self._thread.start()
            self._queue.put(hit)
        return hit.done

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            group: list[Hit] = []
            if first is None:
                stop = True
            else:
                group.append(first)
            while len(group) < MAX_GROUP:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                else:
                    group.append(more)
            if group:
                self._write(group)

    def _write(self, group: list[Hit]) -> None:
        try:
            mails = self._lookup({hit.token for hit in group})
            rows, recorded = [], []
            for hit in group:
                mail = mails.get(hit.token)
                if mail is None:
                    continue
                outbox_id, thirdparty_id, sent_at = mail
                seconds = (hit.at - sent_at).total_seconds() if sent_at else None
                machine = is_machine(hit.user_agent, hit.ip, seconds, hit.kind, self.cfg.scanner_seconds)
                data = {"outbox_id": outbox_id, "user_agent": hit.user_agent, "ip": hit.stored_ip,
                        "machine": machine, **hit.extra}
                rows.append({"type": hit.event_type, "occurred_at": hit.at, "recorded_at": hit.at,
                             "thirdparty_id": thirdparty_id, "message_id": None, "data": data})
                recorded.append(hit)
            if rows:
                with self.db.engine.begin() as conn:  # a write-only transaction: it never waits on a snapshot
                    conn.execute(_events.insert(), rows)
        except BaseException as exc:
            for hit in group:
                hit.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for hit in group:
            hit.done.set_result(hit in recorded)

    def _lookup(self, tokens: set[str]) -> dict[str, tuple[int, int | None, datetime | None]]:
        found = {token: self._mails[token] for token in tokens if token in self._mails}
        missing = sorted(tokens - found.keys())
        if missing:
            query = (select(_outbox.c.tracking_token, _outbox.c.id, _outbox.c.thirdparty_id, _outbox.c.sent_at)
                     .where(_outbox.c.tracking_token.in_(missing)).order_by(_outbox.c.id))
            with self.db.engine.connect() as conn:
                for token, outbox_id, thirdparty_id, sent_at in conn.execute(query):
                    if token in found:
                        continue  # the first mail with this token, as before
                    found[token] = (outbox_id, thirdparty_id, as_utc(sent_at))
                    if sent_at is not None:
                        self._mails[token] = found[token]
        for token in found:
            if token in self._mails:
                self._mails.move_to_end(token)
        while len(self._mails) > CACHE_SIZE:
            self._mails.popitem(last=False)
        return found
