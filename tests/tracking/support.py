"""What the tracking tests share: a real tracking endpoint (uvicorn on a free port) over a test database, and
its secret and tokens."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
from sqlalchemy import func
from sqlmodel import col, select

from maild.clock import utcnow
from maild.store.db import Database
from maild.store.models import Event, OutboxMessage, ThirdParty, TrackingHits
from maild.tracking.server import TrackingServer

SECRET = b"test-secret-0123456789abcdef"
TOKEN = "Tok3nAAAAbbbbCCCC"
OTHER = "OtherTokenXXXXYYYY"
HUMAN = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


class Endpoint:
    def __init__(self, db: Database, server: TrackingServer, base_url: str) -> None:
        self.db = db
        self.server = server
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, follow_redirects=False, timeout=10,
                                 headers={"User-Agent": HUMAN})

    def events(self, kind: str | None = None, at_least: int = 0) -> list[Event]:
        """The events so far; with at_least, wait (up to 10 s) for that many: opens are written behind."""
        deadline = time.monotonic() + 10
        while True:
            found = self._events(kind)
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    def hits(self, kind: str, at_least: int = 0) -> int:
        """How many hits of this kind ("o" or "c") were counted; with at_least, wait (up to 60 s) for that many."""
        deadline = time.monotonic() + 60
        while True:
            with self.db.session() as session:
                found = session.exec(select(func.coalesce(func.sum(TrackingHits.hits), 0))
                                     .where(TrackingHits.kind == kind)).one()
            if found >= at_least or time.monotonic() > deadline:
                return int(found)
            time.sleep(0.01)

    def _events(self, kind: str | None) -> list[Event]:
        with self.db.session() as session:
            types = [kind] if kind else ["mail.opened", "mail.clicked"]
            return list(session.exec(select(Event).where(col(Event.type).in_(types)).order_by(Event.id)))

    def add_outbox(self, token: str, sent_minutes_ago: float = 30) -> OutboxMessage:
        with self.db.session() as session:
            party = ThirdParty(name=f"Customer {token}")
            session.add(party)
            session.flush()
            row = OutboxMessage(idempotency_key=f"key-{token}", sender="maild@example.com",
                                recipients=["bob@customer.example"], header_message_id=f"<{token}@example.com>",
                                raw_sha256="x" * 64, tracking_token=token, status="sent",
                                thirdparty_id=party.id, sent_at=utcnow() - timedelta(minutes=sent_minutes_ago))
            session.add(row)
        return row
