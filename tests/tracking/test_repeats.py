"""One client's repeated opens and clicks of a mail within `tracking.repeat_window`: counted on the first one's
event, not recorded as new events (the timeline and the rules see one), the counts exact."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import httpx
from sqlalchemy import func, select

from maild.business.history import read
from maild.clock import utcnow
from maild.config import TrackingConfig
from maild.store.db import Database
from maild.store.models import Event, OutboxMessage, TrackingHits
from maild.tracking.links import instrument
from maild.tracking.recorder import EventRecorder, Hit
from maild.tracking.signing import sign
from tests.tracking.support import HUMAN, SECRET, TOKEN, Endpoint
from tests.tracking.test_app import HTML

PHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
         "Version/18.1 Mobile/15E148 Safari/604.1")


def _flood(endpoint: Endpoint, path: str, requests: int, threads: int = 8) -> None:
    per_thread = requests // threads

    def client() -> None:
        with httpx.Client(base_url=endpoint.base_url, timeout=30, headers={"User-Agent": HUMAN}) as http:
            for _ in range(per_thread):
                assert http.get(path).status_code in (200, 302)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)


def test_a_flood_from_one_client_is_one_event_with_the_exact_count(endpoint: Endpoint) -> None:
    outbox = endpoint.add_outbox(TOKEN)
    instrument(endpoint.db, HTML, TOKEN, endpoint.base_url, SECRET)
    _flood(endpoint, f"/o/{sign(SECRET, 'o', TOKEN, None)}", 400)
    _flood(endpoint, f"/c/{sign(SECRET, 'c', TOKEN, 0)}", 80)
    assert endpoint.http.get(f"/c/{sign(SECRET, 'c', TOKEN, 1)}").status_code == 302  # another link: its own event
    assert endpoint.http.get(f"/o/{sign(SECRET, 'o', TOKEN, None)}", headers={"User-Agent": PHONE}).status_code == 200

    assert endpoint.hits("o", at_least=401) == 401 and endpoint.hits("c") == 81
    opens = endpoint.events("mail.opened", at_least=2)
    clicks = endpoint.events("mail.clicked")
    assert [e.data["user_agent"] for e in opens] == [HUMAN, PHONE]  # one event per client
    assert [e.data["link"] for e in clicks] == [0, 1]  # one event per link
    with endpoint.db.engine.connect() as conn:
        counted = dict(conn.execute(select(TrackingHits.event_id, TrackingHits.hits)).all())
    assert counted == {opens[0].id: 400, opens[1].id: 1, clicks[0].id: 80, clicks[1].id: 1}

    lines = [entry.text for entry in read(endpoint.db, outbox.thirdparty_id) if entry.type == "mail.opened"]
    assert len(lines) == 2 and "(400 times by this client, last " in lines[0], lines
    assert "times" not in lines[1]


def _sent_mail(db: Database, sent_at: datetime) -> None:
    with db.session() as session:
        session.add(OutboxMessage(idempotency_key="k", sender="a@example.test", recipients=["b@example.test"],
                                  header_message_id="<k@example.test>", raw_sha256="x" * 64, tracking_token=TOKEN,
                                  status="sent", sent_at=sent_at))


def test_after_the_window_a_repeat_is_a_new_event(db: Database) -> None:
    """Hits with their own times (the recorder is driven directly): within the hour counted, after it a new event."""
    start = utcnow() - timedelta(hours=3)
    _sent_mail(db, start - timedelta(hours=1))
    recorder = EventRecorder(db, TrackingConfig(repeat_window=3600))

    def hit(minutes: float, ua: str = HUMAN) -> Hit:
        return Hit("mail.opened", "o", TOKEN, start + timedelta(minutes=minutes), ua, "203.0.113.7", "203.0.113.0")

    assert recorder._write([hit(0), hit(10), hit(59)]) == [True] * 3
    assert recorder._write([hit(59.5), hit(61), hit(62, PHONE)]) == [True] * 3
    fresh = EventRecorder(db, TrackingConfig(repeat_window=3600))  # a restarted daemon reads the open windows
    assert fresh._write([hit(100), hit(115)]) == [True] * 2
    recorder.close()
    fresh.close()
    with db.engine.connect() as conn:
        rows = conn.execute(select(TrackingHits.client, TrackingHits.hits, TrackingHits.first_at)
                            .order_by(TrackingHits.id)).all()
        events = conn.execute(select(func.count()).select_from(Event.__table__)).scalar_one()
    assert [hits for _client, hits, _first in rows] == [4, 3, 1]  # 0..59.5 | 61, 100, 115 | the phone
    assert events == 3
    assert rows[0].client != rows[2].client


def test_repeat_window_zero_records_every_hit(db: Database) -> None:
    _sent_mail(db, utcnow() - timedelta(hours=1))
    recorder = EventRecorder(db, TrackingConfig(repeat_window=0))
    recorder._write([Hit("mail.opened", "o", TOKEN, utcnow(), HUMAN, "203.0.113.7", "203.0.113.0")] * 5)
    recorder.close()
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Event.__table__)).scalar_one() == 5
