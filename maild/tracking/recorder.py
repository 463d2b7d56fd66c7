"""Queues open/click events for the tracking endpoint and hands them, a group at a time, to the writer.

A click awaits `EventRecorder.record(hit)` and answers once its event is committed. An open uses
`record_soon(hit)`: it is answered at once and its event joins the next group (write-behind). Hits that
arrive while a group is being written go into the next one together: one hop to the recorder's thread and
back, one look-up of their tokens and one transaction for the whole group. The writing itself
(maild/tracking/events.py: look-ups, classification, repeat counts, the INSERTs) runs in the tracking writer
process (`tracking.writer: process`, the default: maild/tracking/writer.py) so the endpoint's process only
verifies, answers and queues; with `thread`, or for a SQLite database in memory, in the recorder's thread.
`close()` writes every hit still pending, so a stop loses nothing; if the writer process is gone by then
(killed with the daemon's process group), the hits it never received are written from this process. A kill -9
loses the opens answered in the last moments (the group being written and those waiting for it, in practice a
few milliseconds' worth): opens are weak signals already (blocked images, proxies), and not waiting for the
commit is what lets the pixel answer at the speed of a bare endpoint. Writing from one place also means the
endpoint never has two write transactions competing for SQLite's single writer.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from maild.config import TrackingConfig
from maild.store.db import Database
from maild.tracking.events import EventWriter, Hit
from maild.tracking.writer import WriterGone, WriterProcess

__all__ = ["EventRecorder", "Hit"]

log = logging.getLogger("maild.tracking")

MAX_GROUP = 500


def _in_memory(url: str) -> bool:
    return url.startswith("sqlite") and (url.rstrip("/") in ("sqlite:", "sqlite+pysqlite:") or ":memory:" in url)


class EventRecorder:
    def __init__(self, db: Database, cfg: TrackingConfig) -> None:
        self.db = db
        self.cfg = cfg
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="maild-tracking-events")
        self._pending: list[tuple[Hit, asyncio.Future[bool] | None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._local: EventWriter | None = None
        self.process = WriterProcess(db.url, cfg) if cfg.writer == "process" and not _in_memory(db.url) else None

    async def record(self, hit: Hit) -> bool:
        """Returns once the event is committed: True, or False if no mail has this token (no event)."""
        done = asyncio.get_running_loop().create_future()
        self._enqueue(hit, done)
        return await done

    def record_soon(self, hit: Hit) -> None:
        """Write-behind: the event goes into the next group; a failure to write it is logged."""
        self._enqueue(hit, None)

    def _enqueue(self, hit: Hit, done: asyncio.Future[bool] | None) -> None:
        self._pending.append((hit, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending:
            group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
            future = self._thread.submit(self._write, [hit for hit, _ in group])
            try:
                recorded = await asyncio.shield(asyncio.wrap_future(future))
            except asyncio.CancelledError:
                # The server's loop is ending. A group not started yet goes back to the queue for close(); one
                # being written is finished by the thread before close() writes anything (one thread, in order).
                if future.cancel():
                    self._pending[:0] = group
                raise
            except Exception as exc:
                waiting = [done for _, done in group if done is not None and not done.done()]
                for done in waiting:
                    done.set_exception(exc)
                if len(waiting) < len(group):
                    log.error("recording %d opens failed", len(group) - len(waiting), exc_info=exc)
                continue
            for (_, done), ok in zip(group, recorded, strict=True):
                if done is not None and not done.done():
                    done.set_result(ok)

    def close(self) -> None:
        """Once the server's event loop has ended: write the hits still pending, then stop the writer."""
        leftover, self._pending = self._pending, []
        try:
            if leftover:
                self._thread.submit(self._write, [hit for hit, _ in leftover]).result()
        except Exception:
            log.exception("could not record %d tracking events at shutdown", len(leftover))
        finally:
            if self.process is not None:
                self._thread.submit(self.process.close).result()
            self._thread.shutdown(wait=True)

    def _write(self, group: list[Hit]) -> list[bool]:
        """In the recorder's thread: the group written by the writer process (or here, see the module doc)."""
        if self.process is not None:
            try:
                return self.process.write(group)
            except WriterGone as exc:
                if exc.sent:
                    raise  # it may have been written: never twice
                log.warning("%s; writing %d tracking hits from the endpoint's process", exc, len(group))
        if self._local is None:
            self._local = EventWriter(self.db, self.cfg)
        return self._local.write(group)
