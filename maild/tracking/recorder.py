"""Writes open/click events for the tracking endpoint: a group of hits per transaction, one writer thread.

A click awaits `EventRecorder.record(hit)` and answers once its event is committed. An open uses
`record_soon(hit)`: it is answered at once and its event joins the next group (write-behind). Hits that
arrive while a transaction is running go into the next one together: one look-up of their tokens, one
INSERT, one hop to the writer thread and back for the whole group, instead of a threadpool hop and a
transaction per request. `close()` writes every hit still pending, so a stop loses nothing; a kill -9
loses the opens answered in the last moments (the group being written and those waiting for it, in
practice a few milliseconds' worth): opens are weak signals already (blocked images, proxies), and not
waiting for the commit is what lets the pixel answer at the speed of a bare endpoint. The mails' (outbox
id, third party, sent_at) are cached per token once the mail is sent (none of the three changes after
that). Writing from one thread also means the endpoint never has two write transactions competing for
SQLite's single writer. One client's repeats within `tracking.repeat_window` are counted on the first one's
event instead of becoming events (maild/tracking/repeats.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select

from maild.clock import as_utc
from maild.config import TrackingConfig
from maild.store.db import Database
from maild.store.models import OutboxMessage
from maild.tracking.classify import image_proxy, is_machine
from maild.tracking.clients import client_key
from maild.tracking.repeats import Key, RepeatCounter

log = logging.getLogger("maild.tracking")

_outbox = OutboxMessage.__table__
_MAILS = (select(_outbox.c.tracking_token, _outbox.c.id, _outbox.c.thirdparty_id, _outbox.c.sent_at)
          .where(_outbox.c.tracking_token.in_(bindparam("tokens", expanding=True))).order_by(_outbox.c.id))
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


def _log_failure(done: asyncio.Future[bool]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.error("recording an open failed", exc_info=done.exception())


class EventRecorder:
    def __init__(self, db: Database, cfg: TrackingConfig) -> None:
        self.db = db
        self.cfg = cfg
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="maild-tracking-events")
        self._pending: list[tuple[Hit, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._mails: OrderedDict[str, tuple[int, int | None, datetime | None]] = OrderedDict()
        self._repeats = RepeatCounter(cfg.repeat_window)

    async def record(self, hit: Hit) -> bool:
        """Returns once the event is committed: True, or False if no mail has this token (no event)."""
        return await self._enqueue(hit)

    def record_soon(self, hit: Hit) -> None:
        """Write-behind: the event goes into the next group; a failure to write it is logged."""
        self._enqueue(hit).add_done_callback(_log_failure)

    def _enqueue(self, hit: Hit) -> asyncio.Future[bool]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        self._pending.append((hit, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return done

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
            try:
                recorded = await loop.run_in_executor(self._writer, self._write, [hit for hit, _ in group])
            except Exception as exc:
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), ok in zip(group, recorded, strict=True):
                if not done.done():
                    done.set_result(ok)

    def close(self) -> None:
        """Once the server's event loop has ended: write the hits still pending, then stop the writer."""
        leftover, self._pending = self._pending, []
        try:
            if leftover:
                self._writer.submit(self._write, [hit for hit, _ in leftover]).result()
        except Exception:
            log.exception("could not record %d tracking events at shutdown", len(leftover))
        finally:
            self._writer.shutdown(wait=True)

    def _write(self, group: list[Hit]) -> list[bool]:
        """In the writer thread, on one connection: a read of the group's tokens (ended before writing, so the
        write transaction never has to upgrade an old snapshot), then one write-only transaction."""
        with self.db.engine.connect() as conn:
            return self._write_on(conn, group)

    def _write_on(self, conn: Connection, group: list[Hit]) -> list[bool]:
        mails = self._lookup(conn, {hit.token for hit in group})
        items: list[tuple[Key, datetime, dict[str, Any]]] = []
        recorded = []
        for hit in group:
            mail = mails.get(hit.token)
            recorded.append(mail is not None)
            if mail is None:
                continue
            outbox_id, thirdparty_id, sent_at = mail
            seconds = (hit.at - sent_at).total_seconds() if sent_at else None
            machine = is_machine(hit.user_agent, hit.ip, seconds, hit.kind, self.cfg.scanner_seconds)
            data = {"outbox_id": outbox_id, "user_agent": hit.user_agent, "ip": hit.stored_ip, "machine": machine,
                    **hit.extra}
            proxy = image_proxy(hit.user_agent) if hit.kind == "o" else None
            if proxy:
                data["proxy"] = proxy  # a person's open seen through their provider's proxy (its IP and agent)
            key = (outbox_id, hit.kind, int(hit.extra.get("link", -1)), client_key(hit.ip, hit.user_agent))
            items.append((key, hit.at, {"type": hit.event_type, "occurred_at": hit.at, "recorded_at": hit.at,
                                        "thirdparty_id": thirdparty_id, "message_id": None, "data": data}))
        self._repeats.read(conn, [(key, at) for key, at, _row in items])
        conn.rollback()  # end the read transaction before the write one
        if items:
            with conn.begin():
                self._repeats.write(conn, items)
            self._repeats.committed()
        return recorded

    def _lookup(self, conn: Connection, tokens: set[str]) -> dict[str, tuple[int, int | None, datetime | None]]:
        found = {token: self._mails[token] for token in tokens if token in self._mails}
        missing = sorted(tokens - found.keys())
        if missing:
            for token, outbox_id, thirdparty_id, sent_at in conn.execute(_MAILS, {"tokens": missing}).all():
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
