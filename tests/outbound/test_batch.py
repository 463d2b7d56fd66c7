"""The batch path: prepare_many (in-process and in a PreparePool), queue_many, and sending many at once."""

from __future__ import annotations

import asyncio
import collections
import email
import hashlib
import multiprocessing
import re
import threading
import time
from email import policy
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select, update

from maild.business.invoices import upsert_invoice
from maild.cli.setup import initialise
from maild.clock import utcnow
from maild.config import Config
from maild.directory.service import add_contact, add_document, add_thirdparty
from maild.outbound import attempts, batch, outbox
from maild.outbound.batch import PreparePool, prepare_many, queue_many
from maild.outbound.mailing import MailRequest, prepare, queue
from maild.outbound.sender import OutboxSender
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.store.models import Event, OutboxMessage, TrackingId, TrackingLink
from tests.helpers import config_at, write_config
from tests.outbound.conftest import Sink
from tests.outbound.helpers import queue as queue_raw

T = OutboxMessage.__table__
TEMPLATE = "batch"


@pytest.fixture
def home(tmp_path: Path, db: Database) -> Config:
    config_file = initialise(tmp_path / "home", samples=False)
    data = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    data["sources"] = []
    data["database"]["url"] = db.url
    data["outbound"]["sender"] = "billing@example.test"
    config_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    folder = tmp_path / "home" / "templates" / TEMPLATE
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Invoice {{ invoice.ref }} for {{ contact.name }}\n")
    (folder / "body.txt").write_text("Dear {{ contact.name }}, see {{ invoice.ref }}.\n")
    (folder / "body.html").write_text('<p>Dear {{ contact.name }}, <a href="https://portal.example/{{ invoice.ref }}">'
                                      'portal</a> <a href="https://portal.example/">all</a></p>')
    for i in range(5):
        tp = add_thirdparty(db, name=f"Customer {i}", domains=[f"c{i}.example"])
        add_contact(db, thirdparty_id=tp, name=f"Buyer {i}", addresses=[f"buyer{i}@c{i}.example"])
        upsert_invoice(db, ref=f"FA-{i}", thirdparty_id=tp, issued_on="2026-11-01", due_on="2026-11-15",
                       lines=[{"description": "Service", "quantity": 2, "unit_price": "50.00", "vat_rate": 19}])
    return config_at(config_file)


def requests(n: int) -> list[MailRequest]:
    return [MailRequest(TEMPLATE, f"buyer{i % 5}@c{i % 5}.example", f"FA-{i % 5}") for i in range(n)]


def count(db: Database, table: object) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_prepare_many_matches_prepare_and_queue_many_stores_everything_once(home: Config, db: Database) -> None:
    mails = prepare_many(home, db, requests(12))
    single = prepare(home, db, template=TEMPLATE, to="buyer3@c3.example", invoice_ref="FA-3")
    assert [m.recipient.address for m in mails[:5]] == [f"buyer{i}@c{i}.example" for i in range(5)]
    assert mails[3].recipient.contact == single.recipient.contact
    assert mails[3].recipient.thirdparty == single.recipient.thirdparty
    assert mails[3].subject == single.subject == "Invoice FA-3 for Buyer 3"
    assert all(len(m.links) == 2 for m in mails) and single.links == []  # prepare stored its links at once
    assert count(db, TrackingLink.__table__) == 2

    items = [(mail, f"k{i}", TEMPLATE) for i, mail in enumerate(mails)]
    items.append((mails[0], "k0", TEMPLATE))  # the same key twice in one batch
    results = queue_many(home, db, items)
    assert [created for _, created in results] == [True] * 12 + [False]
    assert results[-1][0] == results[0][0]
    assert count(db, T) == 12 and count(db, TrackingId.__table__) == 12
    assert count(db, TrackingLink.__table__) == 2 + 24
    blobs = BlobStore(home.blob_dir)
    for (outbox_id, _), mail in zip(results, mails, strict=False):
        row = outbox.get(db, outbox_id)
        assert row is not None and blobs.get(row.raw_sha256) == mail.raw and row.tracking_token == mail.token

    again = queue_many(home, db, items[:12])  # a retry of the whole batch queues nothing new
    assert again == [(outbox_id, False) for outbox_id, _ in results[:12]]
    assert count(db, T) == 12 and count(db, TrackingLink.__table__) == 26
    assert queue(home, db, mails[1], key="k1", template=TEMPLATE) == (results[1][0], False)


def test_pool_prepares_the_same_mails_and_syncs_their_blobs(home: Config, db: Database) -> None:
    with PreparePool(home, 2) as pool:
        assert len(pool.pids) == 2
        mails = prepare_many(home, db, requests(30), pool)
    assert [m.subject for m in mails] == [f"Invoice FA-{i % 5} for Buyer {i % 5}" for i in range(30)]
    assert all(m.durable for m in mails) and len({m.token for m in mails}) == 30
    blobs = BlobStore(home.blob_dir)
    assert all(blobs.exists(hashlib.sha256(m.raw).hexdigest()) for m in mails)
    parsed = email.message_from_bytes(mails[7].raw, policy=policy.default)
    html = parsed.get_body(("html",)).get_content()
    assert len(re.findall(r'href="[^"]+/c/[^"]+"', html)) == 2 and "/o/" in html
    assert [p.get_filename() for p in parsed.iter_attachments()] == ["FA-2.pdf"]
    results = queue_many(home, db, [(m, f"p{i}", TEMPLATE) for i, m in enumerate(mails)])
    assert all(created for _, created in results)


def test_the_pool_knows_every_process_even_when_they_start_late(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """On a loaded machine one process may be up long before the others; the pool still reports each of them."""
    started = multiprocessing.get_context("fork").Value("i", 0)
    child_init = batch._child_init

    def late_but_the_first() -> None:  # stands for the load: every process but the first starts 2 s late
        child_init()
        with started.get_lock():
            started.value += 1
            late = started.value > 1
        if late:
            time.sleep(2)

    monkeypatch.setattr(batch, "_child_init", late_but_the_first)
    config = config_at(write_config(tmp_path, f"sqlite:///{tmp_path / 'maild.db'}", []))
    with PreparePool(config, 3) as pool:
        assert len(pool.pids) == 3


def test_a_failure_before_the_commit_queues_nothing(home: Config, db: Database,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Blobs first, one sync, then one transaction: a crash anywhere before the commit leaves no row."""
    mails = prepare_many(home, db, requests(4))
    items = [(mail, f"k{i}", TEMPLATE) for i, mail in enumerate(mails)]

    def sync_fails() -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(BlobStore, "flush", staticmethod(sync_fails))
    with pytest.raises(OSError):
        queue_many(home, db, items)
    assert count(db, T) == 0  # a row is only queued once its blob is durably on disk
    monkeypatch.undo()

    def links_fail(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("crash between the outbox rows and their links")

    monkeypatch.setattr("maild.outbound.queueing.store_links", links_fail)
    with pytest.raises(RuntimeError):
        queue_many(home, db, items)
    assert count(db, T) == 0 and count(db, TrackingId.__table__) == 0  # all of the batch or nothing
    monkeypatch.undo()
    assert all(created for _, created in queue_many(home, db, items))


def test_two_senders_sending_one_batch_never_send_a_key_twice(db: Database, blobs: BlobStore,
                                                             smtp_sink: Sink) -> None:
    keys = [f"b{i:03d}" for i in range(60)]
    for i, key in enumerate(keys):
        queue_raw(db, blobs, key, to=f"p{i}@d{i % 7}.example")
    barrier = threading.Barrier(2)
    results: dict[str, dict[str, int]] = {}

    def run(owner: str) -> None:
        sender = OutboxSender(db, blobs, smtp_sink.transport(max_connections=2), owner, concurrency=2)

        async def go() -> dict[str, int]:
            total = collections.Counter[str]()
            barrier.wait()
            try:
                while True:
                    counts = await sender.send_due(7)
                    if not sum(counts.values()):
                        return dict(total)
                    total.update(counts)
            finally:
                await sender.transport.close()

        results[owner] = asyncio.run(go())

    threads = [threading.Thread(target=run, args=(owner,)) for owner in ("sender-a", "sender-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    seen = collections.Counter(r.subject.removeprefix("offer ") for r in smtp_sink.handler.received)
    assert sorted(seen) == keys and set(seen.values()) == {1}
    assert results["sender-a"]["sent"] + results["sender-b"]["sent"] == 60
    assert results["sender-a"]["sent"] and results["sender-b"]["sent"]  # both took part
    assert {row.status for row in outbox.listing(db)} == {"sent"}
    with db.engine.connect() as conn:
        sent_events = conn.execute(select(func.count()).select_from(Event.__table__)
                                   .where(Event.__table__.c.type == "mail.sent")).scalar_one()
    assert sent_events == 60


class Killed(BaseException):
    """Stands for kill -9: nothing in maild catches it."""


def test_a_crash_during_data_leaves_only_that_row_ambiguous_and_resends_the_rest(
        db: Database, blobs: BlobStore, smtp_sink: Sink) -> None:
    """Only the row whose DATA began is marked: after a crash it waits for a person, the others are re-sent."""
    ids = [queue_raw(db, blobs, f"w{i:02d}") for i in range(20)]
    transport = smtp_sink.transport(max_connections=1)
    sender = OutboxSender(db, blobs, transport, "crashing", concurrency=1)
    original = transport._transaction
    dead: list[bool] = []

    async def crash_in_second_data(client, outbox_id, sender_address, recipients, raw, on_data_started):  # type: ignore[no-untyped-def]
        if dead:
            raise Killed  # a dead process does nothing more

        async def mark_then_die(which: int, connection: str) -> None:
            await on_data_started(which, connection)
            if smtp_sink.handler.received:
                dead.append(True)
                raise Killed  # the process dies once the second row's DATA began

        return await original(client, outbox_id, sender_address, recipients, raw, mark_then_die)

    transport._transaction = crash_in_second_data  # type: ignore[method-assign]

    async def go() -> None:
        try:
            await sender.send_due(len(ids))
        finally:
            await transport.close()

    with pytest.raises(Killed):
        asyncio.run(go())
    with db.engine.begin() as conn:  # the claims expire (the process is gone)
        conn.execute(update(T).values(claimed_until=utcnow()))
    recovered = outbox.recover_stale(db)
    rows = {row.id: row for row in outbox.listing(db)}
    assert len(smtp_sink.handler.received) == 1
    assert rows[ids[0]].status == "sent"  # recorded with the second row's mark, before its DATA
    assert recovered == {"sent": 0, "retry": 18, "ambiguous": 1}
    ambiguous = rows[ids[1]]
    assert ambiguous.status == "ambiguous" and ambiguous.last_error == outbox.AMBIGUOUS
    assert ambiguous.data_started_at is not None and f":{smtp_sink.port}" in ambiguous.data_connection
    for row_id in ids[2:]:
        assert rows[row_id].status == "retry"  # never marked: safe to send again

    again = OutboxSender(db, blobs, smtp_sink.transport(), "after-restart")

    async def resend() -> dict[str, int]:
        try:
            await asyncio.sleep(0)
            with db.engine.begin() as conn:
                conn.execute(update(T).where(T.c.status == "retry").values(next_attempt_at=None))
            return await again.send_due(100)
        finally:
            await again.transport.close()

    assert asyncio.run(resend())["sent"] == 18
    subjects = collections.Counter(r.subject for r in smtp_sink.handler.received)
    assert set(subjects.values()) == {1} and len(subjects) == 19


def test_mark_sent_many_records_each_delivery_once(db: Database, blobs: BlobStore) -> None:
    ids = [queue_raw(db, blobs, f"m{i}") for i in range(5)]
    outbox.claim(db, "me", 5, 60)
    assert outbox.mark_sent_many(db, [(i, f"250 queued {i}") for i in ids[:3]]) == ids[:3]
    assert outbox.mark_sent_many(db, [(i, "250 again") for i in ids]) == ids[3:]
    rows = {row.id: row for row in outbox.listing(db)}
    assert rows[ids[0]].smtp_reply == f"250 queued {ids[0]}" and rows[ids[4]].smtp_reply == "250 again"
    with db.engine.connect() as conn:
        events = conn.execute(select(Event.__table__.c.data).where(Event.__table__.c.type == "mail.sent")).all()
    assert sorted(e.data["outbox_id"] for e in events) == ids


def test_a_data_start_mark_saves_earlier_replies_and_only_marks_rows_still_ours(
        db: Database, blobs: BlobStore) -> None:
    """The mark saves the previous deliveries' replies with it: after a crash those are booked as sent."""
    ids = [queue_raw(db, blobs, f"d{i}") for i in range(4)]
    outbox.claim(db, "me", 3, 60)
    outbox.claim(db, "other", 1, 60)
    outbox.mark_data_started(db, ids[0], "me", "127.0.0.1:5000 -> smtp:25")
    outbox.mark_data_started(db, ids[1], "me", "127.0.0.1:5000 -> smtp:25", replies=[(ids[0], "250 ok")])
    rows = {row.id: row for row in outbox.listing(db)}
    assert rows[ids[0]].smtp_reply == "250 ok" and rows[ids[1]].data_connection == "127.0.0.1:5000 -> smtp:25"
    assert rows[ids[2]].data_started_at is None  # marked one at a time, right before its own DATA
    with pytest.raises(outbox.ClaimLost):
        outbox.mark_data_started(db, ids[3], "me", "c", replies=[(ids[1], "250 queued")])
    rows = {row.id: row for row in outbox.listing(db)}
    assert rows[ids[3]].data_started_at is None and rows[ids[1]].smtp_reply == "250 queued"
    with db.engine.begin() as conn:  # my claims expire (the process is gone)
        conn.execute(update(T).where(T.c.claimed_by == "me").values(claimed_until=utcnow()))
    assert outbox.recover_stale(db) == {"sent": 2, "retry": 1, "ambiguous": 0}
    rows = {row.id: row for row in outbox.listing(db)}
    assert [rows[i].status for i in ids] == ["sent", "sent", "retry", "sending"]
    assert [a.outcome for a in attempts.story(db, ids[0])] == ["sent"]


def test_a_batch_loads_invoices_and_views_like_single_prepares_and_fails_on_the_same_mail(
        home: Config, db: Database) -> None:
    from maild.business.people import contact_view, contact_views, thirdparty_view, thirdparty_views
    from maild.outbound.mailing import load_invoices

    batch = prepare_many(home, db, requests(5))
    for i, mail in enumerate(batch):
        one = prepare(home, db, template=TEMPLATE, to=f"buyer{i}@c{i}.example", invoice_ref=f"FA-{i}")
        assert mail.recipient == one.recipient and mail.subject == one.subject
        assert mail.attachments == one.attachments == [f"FA-{i}.pdf"]
    # A bare document number (kept for matching) is found, and refused: a PDF needs the invoice's amounts.
    add_document(db, ref="DOC-0", thirdparty_id=(batch[0].recipient.thirdparty or {})["id"])
    rows = load_invoices(db, ["DOC-0", "FA-1", "FA-1", "nope"])
    assert set(rows) == {"DOC-0", "FA-1"} and "amount" in rows["FA-1"]._fields and "amount" not in rows["DOC-0"]._fields
    with pytest.raises(ValueError, match="DOC-0 is only a document reference"):
        prepare_many(home, db, [*requests(3), MailRequest(TEMPLATE, "buyer0@c0.example", "DOC-0")])

    # An unknown ref, or one of another third party, fails the batch at that mail, as `prepare` does.
    with pytest.raises(ValueError, match="no invoice FA-9"):
        prepare_many(home, db, [*requests(3), MailRequest(TEMPLATE, "buyer0@c0.example", "FA-9")])
    with pytest.raises(ValueError, match="another third party"):
        prepare_many(home, db, [*requests(3), MailRequest(TEMPLATE, "buyer0@c0.example", "FA-2")])

    # The batched views are the single views, in order (one query for all the addresses).
    contacts = [dict(mail.recipient.contact or {}) for mail in batch]
    parties = [dict(mail.recipient.thirdparty or {}) for mail in batch]
    with db.engine.connect() as conn:
        assert contact_views(conn, contacts[::-1]) == [contact_view(conn, c) for c in contacts[::-1]]
        assert thirdparty_views(conn, parties) == [thirdparty_view(conn, p) for p in parties]
        assert [c["email"] for c in contact_views(conn, contacts)] == [f"buyer{i}@c{i}.example" for i in range(5)]
        assert contact_views(conn, []) == [] and thirdparty_view(conn, None) is None


def test_settling_a_failed_pass_saves_the_replies_then_recovers_the_claims_at_once(
        db: Database, blobs: BlobStore) -> None:
    """No waiting for the lease: delivered -> sent, DATA without outcome -> ambiguous, never started -> retry; a
    reply that arrives for a row someone else made ambiguous meanwhile books it (the server's 250 is the truth)."""
    ids = [queue_raw(db, blobs, f"s{i}") for i in range(5)]
    outbox.claim(db, "me", 4, 3600)
    outbox.claim(db, "other", 1, 3600)
    for row_id, connection in ((ids[0], "c1"), (ids[1], "c2"), (ids[2], "c1")):
        outbox.mark_data_started(db, row_id, "me", connection)
    outbox.mark_data_started(db, ids[4], "other", "c3")
    with db.engine.begin() as conn:  # the other sender's claim expired during its long outage
        conn.execute(update(T).where(T.c.claimed_by == "other").values(claimed_until=utcnow()))
    assert outbox.recover_stale(db) == {"sent": 0, "retry": 0, "ambiguous": 1}
    # several replies at once (one statement for all of them)
    assert outbox.settle_claims(db, "me", [(ids[0], "250 ok"), (ids[1], "250 ok too")]) == \
        {"sent": 2, "retry": 1, "ambiguous": 1}
    assert [row.status for row in outbox.listing(db)] == ["sent", "sent", "ambiguous", "retry", "ambiguous"]
    assert outbox.settle_claims(db, "other", [(ids[4], "250 late")]) == {"sent": 1, "retry": 0, "ambiguous": 0}
    row = outbox.get(db, ids[4])
    assert row is not None and row.status == "sent" and row.smtp_reply == "250 late"
    assert [a.outcome for a in attempts.story(db, ids[4])] == ["ambiguous", "sent"]
