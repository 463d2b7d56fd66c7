"""Writing one group of open/click hits: their mails looked up, each classified, one write transaction.

Used by the tracking writer (maild/tracking/writer.py, a process of its own) or, in `tracking.writer: thread`
mode and when that process is gone, by the recorder's thread. The mails' (outbox id, third party, sent_at) are
cached per token once the mail is sent (none of the three changes after that). One client's repeats within
`tracking.repeat_window` are counted on the first one's event instead of becoming events (repeats.py).
"""

from __future__ import annotations

from collections import OrderedDict
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

_outbox = OutboxMessage.__table__
_MAILS = (select(_outbox.c.tracking_token, _outbox.c.id, _outbox.c.thirdparty_id, _outbox.c.sent_at)
          .where(_outbox.c.tracking_token.in_(bindparam("tokens", expanding=True))).order_by(_outbox.c.id))
CACHE_SIZE = 10_000


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


class EventWriter:
    def __init__(self, db: Database, cfg: TrackingConfig) -> None:
        self.db = db
        self.cfg = cfg
        self._mails: OrderedDict[str, tuple[int, int | None, datetime | None]] = OrderedDict()
        self._repeats = RepeatCounter(cfg.repeat_window)

    def write(self, group: list[Hit]) -> list[bool]:
        """Per hit: True once its event (or its count on an earlier one) is committed, False if no mail has its
        token. On one connection: a read of the group's tokens (ended before writing, so the write transaction
        never has to upgrade an old snapshot), then one write-only transaction."""
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
