"""The event recorder behind the tracking endpoint: hits written in groups, each answered once committed."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from maild.clock import utcnow
from maild.config import TrackingConfig
from maild.store.db import Database
from maild.store.models import Event, OutboxMessage
from maild.tracking.links import instrument
from maild.tracking.recorder import EventRecorder, Hit
from maild.tracking.signing import sign
from tests.tracking.support import HUMAN, SECRET, TOKEN, Endpoint
from tests.tracking.test_app import HTML


def test_concurrent_opens_are_all_recorded_by_the_time_the_server_stops(endpoint: Endpoint,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Opens are written behind the answer, in groups; stopping the server writes whatever is pending."""
    endpoint.add_outbox(TOKEN)
    recorder = endpoint.server.app.state.recorder
    write = recorder._write

    def slow_write(group: list[Hit]) -> list[bool]:
        time.sleep(1.0)  # a slow disk: answered opens pile up behind the transaction in progress
        return write(group)

    monkeypatch.setattr(recorder, "_write", slow_write)
    path = f"/o/{sign(SECRET, 'o', TOKEN, None)}"

    def burst() -> None:
        barrier = threading.Barrier(8)

        def opener() -> None:
            with httpx.Client(base_url=endpoint.base_url, timeout=10, headers={"User-Agent": HUMAN}) as http:
                barrier.wait()
                for _ in range(5):
                    assert http.get(path).status_code == 200

        threads = [threading.Thread(target=opener) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    burst()  # its first hits are being written (slowly) ...
    time.sleep(0.1)
    burst()  # ... while these wait for the next group
    assert endpoint.hits("o") < 80  # answered before written
    endpoint.server.stop()  # the event loop ends with hits still pending: close() writes them
    assert endpoint.hits("o") == 80
    assert len(endpoint.events("mail.opened")) == 1  # one client's repeats: counted on the first open's event


def test_a_click_is_committed_before_its_redirect(endpoint: Endpoint) -> None:
    endpoint.add_outbox(TOKEN)
    instrument(endpoint.db, HTML, TOKEN, endpoint.base_url, SECRET)
    path = f"/c/{sign(SECRET, 'c', TOKEN, 0)}"
    barrier = threading.Barrier(4)
    seen: list[tuple[int, int]] = []

    def clicker() -> None:
        with httpx.Client(base_url=endpoint.base_url, timeout=10, headers={"User-Agent": HUMAN}) as http:
            barrier.wait()
            for mine in range(1, 6):
                assert http.get(path).status_code == 302
                seen.append((mine, endpoint.hits("c")))

    threads = [threading.Thread(target=clicker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(seen) == 20 and all(count >= mine for mine, count in seen)
    assert endpoint.hits("c") == 20
    assert len(endpoint.events("mail.clicked")) == 1


def test_a_mail_not_sent_yet_is_looked_up_again_once_sent(endpoint: Endpoint) -> None:
    """Only sent mails are cached: a click before sending must not pin sent_at to None."""
    row = endpoint.add_outbox(TOKEN)
    table = OutboxMessage.__table__
    with endpoint.db.engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == row.id).values(sent_at=None, status="sending"))
    instrument(endpoint.db, HTML, TOKEN, endpoint.base_url, SECRET)
    click = f"/c/{sign(SECRET, 'c', TOKEN, 1)}"
    assert endpoint.http.get(click).status_code == 302
    with endpoint.db.engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == row.id).values(sent_at=utcnow() - timedelta(seconds=2),
                                                                     status="sent"))
    other_browser = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                     "Chrome/131.0.0.0 Safari/537.36")
    assert endpoint.http.get(click, headers={"User-Agent": other_browser}).status_code == 302  # another client
    before, after = endpoint.events("mail.clicked")
    assert before.data["machine"] is None
    assert after.data["machine"] == "within-10s-of-sending"


def test_hits_arriving_together_share_a_transaction(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    with db.session() as session:
        session.add(OutboxMessage(idempotency_key="k", sender="a@example.test", recipients=["b@example.test"],
                                  header_message_id="<k@example.test>", raw_sha256="x" * 64, tracking_token="tokQ",
                                  status="sent", sent_at=utcnow() - timedelta(hours=1)))
    recorder = EventRecorder(db, TrackingConfig())
    groups: list[int] = []
    write = recorder._write
    monkeypatch.setattr(recorder, "_write", lambda group: groups.append(len(group)) or write(group))

    async def hits() -> list[bool]:
        return await asyncio.gather(*(recorder.record(Hit("mail.opened", "o", token, utcnow(), HUMAN,
                                                          f"198.51.{n}.1", f"198.51.{n}.0"))  # 21 clients
                                      for n, token in enumerate(["tokQ"] * 20 + ["unknown"])))

    assert asyncio.run(hits()) == [True] * 20 + [False]
    recorder.close()
    assert sum(groups) == 21 and len(groups) <= 2  # the first hit alone at most, then the rest together
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Event.__table__)).scalar_one() == 20
