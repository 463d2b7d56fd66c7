"""What follows from a notice at ingest (Maildir, real SQLite and PostgreSQL): the outbox row bounced, the event on
the third party's timeline, address health, forged notices not counted, a person's mail clears the address, and
sending to an undeliverable address refused unless overridden."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from maild.bounces import health
from maild.daemon import Daemon
from maild.directory import service
from maild.outbound import mailing, outbox
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.store.models import AddressHealth, Bounce, Event, Message, MessageMatch, OutboxMessage
from tests.classify.samples import WRITTEN
from tests.helpers import config_at, invoke, make_message, write_config

INSTANCE = "test01"


@pytest.fixture
def home(tmp_path: Path, db_url: str):
    box = mailbox.Maildir(str(tmp_path / "mail"), create=True)
    source = {"name": "local", "type": "maildir", "path": str(tmp_path / "mail")}
    path = write_config(tmp_path / "home", db_url, [source])
    data = yaml.safe_load(path.read_text())
    data["matching"] = {"instance_id": INSTANCE, "own_domains": ["example.com"]}
    data["outbound"] = {"sender": "billing@example.com", "return_path": "bounces@example.com",
                        "transport": {"type": "file", "directory": "sent"}}
    data["machine_mail"] = {"soft_bounce_limit": 2}
    path.write_text(yaml.safe_dump(data))
    template = tmp_path / "home" / "templates" / "note"
    template.mkdir(parents=True)
    (template / "subject.txt").write_text("A note\n")
    (template / "body.txt").write_text("Hello.\n")
    config = config_at(path)
    db = Database(config.database_url)
    db.upgrade()
    tp = service.add_thirdparty(db, name="Customer GmbH", domains=["customer.example"])
    service.add_contact(db, thirdparty_id=tp, name="Buchhaltung", addresses=["buchhaltung@customer.example"])
    return config, db, box, tp


def sent(config, db: Database, tp: int, to: str, token: str, key: str) -> int:
    raw = make_message(subject="Payment reminder", sender="billing@example.com")
    outbox_id, _ = outbox.enqueue(db, BlobStore(config.blob_dir), key=key, raw=raw, sender="billing@example.com",
                                  recipients=[to], subject="Payment reminder",
                                  header_message_id=f"<maild.{INSTANCE}.{token}@example.com>", thirdparty_id=tp,
                                  tracking_token=token)
    assert outbox.mark_sent(db, outbox_id, "250 ok")
    return outbox_id


def notice(name: str, **replace: str) -> bytes:
    raw = (WRITTEN / name).read_bytes()
    for old, new in replace.items():
        raw = raw.replace(old.encode(), new.encode())
    return raw


def ingest(config, db: Database) -> None:
    assert not Daemon(config, db).ingest_once().errors


def test_a_hard_bounce_marks_the_row_the_address_and_the_timeline(home) -> None:
    config, db, box, tp = home
    row_id = sent(config, db, tp, "buchhaltung@customer.example", "AbCdEfGh12345678", "k1")
    box.add(notice("exchange-m365-ndr.eml"))
    ingest(config, db)
    with db.engine.connect() as conn:
        message = conn.execute(select(Message.__table__)).one()
        assert message.kind == "bounce"
        decision = conn.execute(select(MessageMatch.__table__)).one()
        assert (decision.status, decision.thirdparty_id, decision.matcher) == ("matched", tp, "bounce")
        row = conn.execute(select(OutboxMessage.__table__).where(OutboxMessage.__table__.c.id == row_id)).one()
        assert row.status == "bounced"
        assert "5.1.10" in row.last_error and "buchhaltung@customer.example" in row.last_error
        event = conn.execute(select(Event.__table__).where(Event.__table__.c.type == "mail.bounced")).one()
        assert event.thirdparty_id == tp
        assert (event.data["outbox_id"], event.data["status"], event.data["hard"]) == (row_id, "5.1.10", True)
    found = health.lookup(db, "Buchhaltung@Customer.example")
    assert found is not None and found.state == "undeliverable"
    assert "user unknown" in found.describe()
    with pytest.raises(health.Undeliverable, match=r"buchhaltung@customer\.example is undeliverable since"):
        mailing.prepare(config, db, template="note", to="buchhaltung@customer.example")
    assert mailing.prepare(config, db, template="note", to="buchhaltung@customer.example", allow_undeliverable=True)

    shown = invoke(Path(config.base_dir) / "maild.yaml", "contact", "show", "buchhaltung@customer.example").stdout
    assert "contact #" in shown and "Buchhaltung" in shown
    assert "health: undeliverable since" in shown and "5.1.10" in shown
    explained = invoke(Path(config.base_dir) / "maild.yaml", "explain", str(message.id)).stdout
    assert "kind: bounce" in explained and "dsn: Content-Type: multipart/report" in explained
    assert f"recipient buchhaltung@customer.example (our mail #{row_id}): failed 5.1.10" in explained
    assert "decision: matched -> Customer GmbH" in explained

    # The same notice again (a second copy in the folder) changes nothing.
    box.add(notice("exchange-m365-ndr.eml") + b"\r\n")
    ingest(config, db)
    with db.engine.connect() as conn:
        assert len(conn.execute(select(Event.__table__).where(Event.__table__.c.type == "mail.bounced")).all()) == 2
        assert len(conn.execute(select(Bounce.__table__)).all()) == 2

    # A person writes from the address again: it is cleared, on the timeline.
    box.add(make_message(subject="Neue Adresse", sender="buchhaltung@customer.example"))
    ingest(config, db)
    assert health.lookup(db, "buchhaltung@customer.example").state == "ok"
    with db.engine.connect() as conn:
        cleared = conn.execute(select(Event.__table__).where(Event.__table__.c.type == "address.cleared")).one()
        assert cleared.thirdparty_id == tp and cleared.data["address"] == "buchhaltung@customer.example"
    assert mailing.prepare(config, db, template="note", to="buchhaltung@customer.example")


def test_a_forged_bounce_for_an_address_we_never_mailed_counts_for_nothing(home) -> None:
    config, db, box, _ = home
    box.add(notice("gmail-dsn.eml", **{"anna.schmidt@gmail.com": "ceo@customer.example"}))
    ingest(config, db)
    with db.engine.connect() as conn:
        bounce = conn.execute(select(Bounce.__table__)).one()
        assert (bounce.address, bounce.counted, bounce.outbox_id) == ("ceo@customer.example", False, None)
        assert conn.execute(select(AddressHealth.__table__)).all() == []
        event = conn.execute(select(Event.__table__).where(Event.__table__.c.type == "mail.bounced")).one()
        assert "never sent" in event.data["not_counted"]
        decision = conn.execute(select(MessageMatch.__table__)).one()
        assert (decision.status, decision.matcher) == ("unmatched", "bounce")


def test_soft_bounces_count_up_to_the_limit_and_a_delay_is_no_failure(home) -> None:
    config, db, box, tp = home
    first = sent(config, db, tp, "j.doe@mailbox-full.example", "SeS0000000000001", "s1")
    second = sent(config, db, tp, "j.doe@mailbox-full.example", "SeS0000000000002", "s2")
    delayed = sent(config, db, tp, "slow@slow.example", "DeLay00000000001", "d1")
    box.add(notice("amazon-ses-dsn.eml"))
    box.add(notice("postfix-delayed.eml", **{"<pfx-delay-1@mail.example.com>":
                                             "<pfx-delay-1@mail.example.com>\r\nIn-Reply-To: "
                                             "<maild.test01.DeLay00000000001@example.com>"}))
    ingest(config, db)
    assert health.lookup(db, "j.doe@mailbox-full.example").state == "soft"
    assert health.lookup(db, "slow@slow.example") is None
    with db.engine.connect() as conn:
        statuses = dict(conn.execute(select(OutboxMessage.__table__.c.id, OutboxMessage.__table__.c.status)).all())
        assert statuses == {first: "bounced", second: "sent", delayed: "sent"}
        assert conn.execute(select(Event.__table__.c.thirdparty_id)
                            .where(Event.__table__.c.type == "mail.delayed")).scalar_one() == tp
    box.add(notice("amazon-ses-dsn.eml", SeS0000000000001="SeS0000000000002"))
    ingest(config, db)
    found = health.lookup(db, "j.doe@mailbox-full.example")
    assert found.state == "undeliverable" and "2 soft bounces" in found.reason


def test_a_notice_in_an_unknown_format_to_our_verp_address_is_tied_to_its_row(home) -> None:
    config, db, box, tp = home
    row_id = sent(config, db, tp, "buchhaltung@customer.example", "VeRp000000000001", "v1")
    box.add(b"From: Mail System <system@mx.customer.example>\r\nTo: bounces+maild.test01.VeRp000000000001@example.com"
            b"\r\nSubject: Your mail\r\nReturn-Path: <>\r\nMessage-ID: <weird-1@mx.customer.example>\r\n\r\n"
            b"Something went wrong with your mail. Sorry.\r\n")
    ingest(config, db)
    with db.engine.connect() as conn:
        assert conn.execute(select(Message.__table__.c.kind)).scalar_one() == "bounce"
        row = conn.execute(select(OutboxMessage.__table__).where(OutboxMessage.__table__.c.id == row_id)).one()
        assert row.status == "bounced"
    assert health.lookup(db, "buchhaltung@customer.example").state == "soft"


def test_return_path_must_be_a_plain_address(tmp_path: Path) -> None:
    from maild.config import ConfigError

    for bad in ("Bounces <bounces@example.com>", "bounces+x@example.com", "bounces", "b@x\r\nBcc: y@z.example"):
        path = tmp_path / "maild.yaml"
        path.write_text(yaml.safe_dump({"outbound": {"return_path": bad}}))
        with pytest.raises(ConfigError, match=r"outbound\.return_path"):
            config_at(path)
    path.write_text(yaml.safe_dump({"outbound": {"return_path": "bounces@example.com"}}))
    assert config_at(path).outbound.return_path == "bounces@example.com"
