"""The mark a sender commits right before each SMTP DATA: one short transaction on a connection of its own.

Marking every row just before its own DATA (not a window of rows ahead) is what keeps a crash's ambiguous
rows to at most one per SMTP connection; it has to be cheap, so it is two plain statements on one DBAPI
connection held for a sending pass (no pool checkout, no statement building per mail):
- the SMTP replies of deliveries not yet on record (`smtp_reply` on rows still `sending`, or made `ambiguous`
  meanwhile: after a crash or an outage `recover_stale` books them as sent), so a connection's previous mail is
  never ambiguous once its next DATA may begin;
- "DATA begins now on connection C" for the row (`data_started_at`, `data_connection`), only while the row
  is still claimed by this sender.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from maild.clock import utcnow
from maild.store.db import Database
from maild.store.models import OutboxMessage

T = OutboxMessage.__table__
# A delivery's reply is saved on its row while it is claimed, or made ambiguous meanwhile, until it is booked.
REPLY_KEPT_IN = ("sending", "ambiguous")


class DataStartMarks:
    def __init__(self, db: Database) -> None:
        self.db = db
        dialect = db.engine.dialect
        slot = "?" if dialect.paramstyle == "qmark" else "%s"
        self._mark = (f"UPDATE {T.name} SET data_started_at = {slot}, data_connection = {slot} "
                      f"WHERE id = {slot} AND status = 'sending' AND claimed_by = {slot}")
        kept = ", ".join(f"'{status}'" for status in REPLY_KEPT_IN)
        self._reply = f"UPDATE {T.name} SET smtp_reply = {slot} WHERE id = {slot} AND status IN ({kept})"
        processor = T.c.data_started_at.type._cached_bind_processor(dialect)
        self._timestamp: Callable[[Any], Any] = processor or (lambda value: value)
        self._raw: Any = None

    def mark(self, outbox_id: int, owner: str, connection: str, replies: Sequence[tuple[int, str]] = ()) -> bool:
        """Commit the replies and the mark; False if the row is no longer `sending` under `owner` (the
        replies are committed all the same)."""
        if self._raw is None:
            self._raw = self.db.engine.raw_connection()
        try:
            cursor = self._raw.cursor()
            try:
                if replies:
                    cursor.executemany(self._reply, [(reply, row_id) for row_id, reply in replies])
                cursor.execute(self._mark, (self._timestamp(utcnow()), connection, outbox_id, owner))
                marked = cursor.rowcount == 1
            finally:
                cursor.close()
            self._raw.commit()
        except BaseException:
            self._discard()
            raise
        return marked

    def close(self) -> None:
        """Give the connection back to the pool (at the end of a pass)."""
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()

    def _discard(self) -> None:
        raw, self._raw = self._raw, None
        if raw is None:
            return
        try:
            raw.rollback()
        except Exception:  # the connection is broken: the pool must not hand it out again
            raw.invalidate()
            return
        raw.close()
