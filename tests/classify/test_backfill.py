"""Mail stored before classification (kind NULL) classified by the same chain from its raw bytes (SQLite and
PostgreSQL): a bounce, an auto-reply, a person's mail, missing and damaged raw bytes; newest first, resumable,
idempotent, never twice; what a late bounce does not set off; `maild classify --backfill`; `maild status`."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from maild.classify.backfill import BACKFILLED, BlobStoreMissing, backfill, classify_rows, store, unclassified
from maild.classify.base import Classification, Settings
from maild.status import collect
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.store.models import AddressHealth, Bounce, Event, Message, OutboxMessage
from tests.helpers import invoke

INSTANCE = "test01"
SETTINGS = Settings(instance_id=INSTANCE)
TOKEN = "Tok3nOfOurLetter0001"
OUR_MESSAGE_ID = f"<maild.{INSTANCE}.{TOKEN}@ourco.example>"
WHEN = datetime(2025, 3, 4, 10, tzinfo=UTC)
_m = Message.__table__


def person(subject: str = "Frage zur Rechnung", body: str = "Können Sie mir die Rechnung noch einmal schicken?",
           sender: str = "anna@mueller.example") -> bytes:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = f"Anna Müller <{sender}>", "billing@ourco.example", subject
    mail["Date"], mail["Message-ID"] = format_datetime(WHEN), f"<{abs(hash(subject))}@mueller.example>"
    mail.set_content(body)
    return mail.as_bytes()


def auto_reply() -> bytes:
    mail = EmailMessage()
    mail["From"], mail["To"] = "Anna Müller <anna@mueller.example>", "billing@ourco.example"
    mail["Subject"] = "Automatische Antwort: Zahlungserinnerung"
    mail["Auto-Submitted"] = "auto-replied"
    mail["Date"], mail["Message-ID"] = format_datetime(WHEN), "<ooo-1@mueller.example>"
    mail.set_content("Ich bin bis 12.12. nicht im Büro und lese keine Mail.")
    return mail.as_bytes()


def bounce(recipient: str = "j.weiss@mueller.example", message_id: str = OUR_MESSAGE_ID) -> bytes:
    """A delivery status notification (RFC 3464) of a hard bounce of our letter, as Postfix writes one."""
    host = "mx.mueller.example"
    return (f"Return-Path: <>\r\nFrom: Mail Delivery System <MAILER-DAEMON@{host}>\r\nTo: billing@ourco.example\r\n"
            f"Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n"
            f"Date: Tue, 04 Mar 2025 09:01:00 +0000\r\nMessage-ID: <bounce-1@{host}>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n--b1\r\n"
            f"Content-Type: text/plain\r\n\r\nThis is the mail system at host {host}.\r\n\r\n<{recipient}>: "
            f"550 5.1.1 User unknown\r\n\r\n--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
            f"Reporting-MTA: dns; {host}\r\n\r\nFinal-Recipient: rfc822; {recipient}\r\nAction: failed\r\n"
            f"Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <{recipient}>: User unknown\r\n\r\n--b1\r\n"
            f"Content-Type: text/rfc822-headers\r\n\r\nFrom: billing@ourco.example\r\nTo: {recipient}\r\n"
            f"Message-ID: {message_id}\r\n\r\n--b1--\r\n").encode()


def stored(db: Database, blobs: BlobStore, raw: bytes | None, *, digest: str | None = None,
           subject: str = "old mail") -> int:
    """A message as a maild before classification stored it: kind NULL, its raw bytes in the blob store (None:
    not there)."""
    if raw is not None:
        digest = blobs.put(raw)
    digest = digest or f"{abs(hash(subject)):064x}"[:64]
    with db.engine.begin() as conn:
        return int(conn.execute(_m.insert().returning(_m.c.id).values(
            raw_sha256=digest, size=len(raw or b""), subject=subject, from_addr="anna@mueller.example", date=WHEN,
            references=[], to_addrs=[], cc_addrs=[], reply_to=[], defects=[])).scalar_one())


def rows(db: Database) -> dict[int, Any]:
    with db.engine.connect() as conn:
        return {row.id: row for row in conn.execute(select(_m.c.id, _m.c.kind, _m.c.machine))}


def count(db: Database, table: Any) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    store = BlobStore(tmp_path / "blobs")
    store.root.mkdir()
    return store


def test_each_kind_from_its_raw_bytes_and_bad_bytes_are_unknown(db: Database, blobs: BlobStore) -> None:
    ids = {
        "bounce": stored(db, blobs, bounce(), subject="bounce"),
        "auto_reply": stored(db, blobs, auto_reply(), subject="ooo"),
        "human": stored(db, blobs, person(), subject="person"),
        "missing": stored(db, blobs, None, subject="missing"),
        "damaged": stored(db, blobs, None, digest=blobs.put(b"something else"), subject="damaged"),
    }
    with db.engine.begin() as conn:  # the damaged one: bytes under a digest that is not theirs
        wrong = "0" * 64
        conn.execute(update(_m).where(_m.c.id == ids["damaged"]).values(raw_sha256=wrong))
    blobs.path(wrong).parent.mkdir(parents=True, exist_ok=True)
    blobs.path(wrong).write_bytes(b"From: x@y.example\r\n\r\nnot the mail\r\n")

    seen: list[int] = []
    total = backfill(db, blobs, SETTINGS, batch=2, progress=lambda done: seen.append(done.rows))
    assert seen == [2, 4, 5] and total.written == 5
    assert total.kinds == {"bounce": 1, "auto_reply": 1, "human": 1, "unknown": 2}
    found = rows(db)
    assert {name: found[i].kind for name, i in ids.items()} == {
        "bounce": "bounce", "auto_reply": "auto_reply", "human": "human", "missing": "unknown", "damaged": "unknown"}
    record = Classification.from_json(found[ids["bounce"]].machine)
    assert record is not None and record.tokens == [TOKEN]
    assert [(r.address, r.status, r.hard) for r in record.recipients] == [("j.weiss@mueller.example", "5.1.1", True)]
    assert found[ids["bounce"]].machine[BACKFILLED] is True
    assert found[ids["human"]].machine is None  # plain human mail: its kind only, as at ingest
    assert "missing from the blob store" in found[ids["missing"]].machine["reasons"][0]
    assert "damaged" in found[ids["damaged"]].machine["reasons"][0]

    # Idempotent: nothing left, a second run does nothing.
    again = backfill(db, blobs, SETTINGS, batch=2)
    assert (again.rows, again.written) == (0, 0) and rows(db) == found


def test_newest_first_resumable_and_never_twice(db: Database, blobs: BlobStore) -> None:
    ids = [stored(db, blobs, person(subject=f"mail {n}"), subject=f"mail {n}") for n in range(5)]
    first = backfill(db, blobs, SETTINGS, batch=10, limit=2)  # stopped after two: the newest two
    assert first.written == 2
    assert [i for i, row in sorted(rows(db).items()) if row.kind] == ids[-2:]
    with db.engine.connect() as conn:
        assert unclassified(conn) == 3

    # Meanwhile another run classified one (the daemon beside the command): it is not written again.
    with db.engine.begin() as conn:
        assert store(conn, {ids[0]: Classification("auto_reply", ["test: classified by someone else"])}) == {ids[0]}
        assert store(conn, {ids[0]: Classification("human", ["stale"])}) == set()
    rest = backfill(db, blobs, SETTINGS, batch=1)
    assert rest.written == 2 and rows(db)[ids[0]].kind == "auto_reply"
    with db.engine.connect() as conn:
        assert unclassified(conn) == 0


def test_a_late_bounce_changes_nothing_after_the_fact(db: Database, blobs: BlobStore) -> None:
    """The letter it returns stays `sent`, the address's health untouched, no bounce records, no events."""
    with db.engine.begin() as conn:
        conn.execute(OutboxMessage.__table__.insert().values(
            idempotency_key="level-1:invoice:1:2025-03-01", status="sent", sender="billing@ourco.example",
            recipients=["j.weiss@mueller.example"], header_message_id=OUR_MESSAGE_ID, tracking_token=TOKEN,
            raw_sha256="a" * 64))
    message = stored(db, blobs, bounce())
    events = count(db, Event.__table__)
    assert backfill(db, blobs, SETTINGS).written == 1
    assert rows(db)[message].kind == "bounce"
    with db.engine.connect() as conn:
        assert conn.execute(select(OutboxMessage.__table__.c.status)).scalar_one() == "sent"
    assert (count(db, Bounce.__table__), count(db, AddressHealth.__table__)) == (0, 0)
    assert count(db, Event.__table__) == events


def test_a_blob_store_that_is_not_there_classifies_nothing(db: Database, tmp_path: Path) -> None:
    message = stored(db, BlobStore(tmp_path / "elsewhere"), person())
    with pytest.raises(BlobStoreMissing, match=r"storage\.blob_dir"):
        classify_rows(db, BlobStore(tmp_path / "no-such-folder"), SETTINGS, 10)
    assert rows(db)[message].kind is None


def test_the_command_and_status(db: Database, tmp_path: Path) -> None:
    config = write_config(tmp_path, db)
    blobs = BlobStore(tmp_path / "blobs")
    ids = [stored(db, blobs, raw, subject=str(n)) for n, raw in enumerate((person(), auto_reply(), bounce()))]
    stored(db, blobs, None, subject="missing")

    status = collect(db)["classify"]
    assert status == {"on": True, "unclassified": 4, "backfill": None}
    shown = invoke(config, "status")
    assert "classify 4 stored message(s) without a kind yet" in shown.stdout

    partial = invoke(config, "classify", "--backfill", "--limit", "3", "--batch", "2", check=False)
    assert partial.returncode == 0, partial.stderr
    assert "4 stored message(s) without a kind; classifying 3, newest first" in partial.stderr
    assert "  2/3: " in partial.stderr and "  3/3: " in partial.stderr
    assert partial.stdout.strip().endswith("; 1 left without a kind")
    rest = invoke(config, "classify", "--backfill", check=False)
    assert rest.returncode == 0 and "1 classified (human 1)" in rest.stdout and "0 left" in rest.stdout
    assert [rows(db)[i].kind for i in ids] == ["human", "auto_reply", "bounce"]
    assert "without a kind" not in invoke(config, "status").stdout
    again = invoke(config, "classify", "--backfill", check=False)
    assert again.returncode == 0 and again.stdout.strip() == "0 classified; 0 left without a kind"

    wrong = invoke(config, "classify", "--backfill", str(tmp_path / "x.eml"), check=False)
    assert wrong.returncode == 2 and "give no FILEs" in wrong.stderr
    assert invoke(config, "classify", check=False).returncode == 2


def test_the_command_refuses_when_classification_is_off(db: Database, tmp_path: Path) -> None:
    config = write_config(tmp_path, db, classify=False)
    stored(db, BlobStore(tmp_path / "blobs"), person())
    refused = invoke(config, "classify", "--backfill", check=False)
    assert refused.returncode == 1 and "machine_mail.classify is false" in refused.stderr
    assert "without a kind" not in invoke(config, "status").stdout  # off: mail without a kind is expected


def write_config(home: Path, db: Database, **machine: Any) -> Path:
    import yaml

    path = home / "maild.yaml"
    path.write_text(yaml.safe_dump({"database": {"url": db.url}, "storage": {"blob_dir": "blobs"},
                                    "matching": {"instance_id": INSTANCE}, "machine_mail": machine,
                                    "web": {"enabled": False}}))
    return path


def test_unreadable_bytes_are_unknown_too(db: Database, blobs: BlobStore) -> None:
    """A blob that cannot be read (here a folder where the file should be) is kind unknown, not a crash."""
    digest = "ab" * 32
    blobs.path(digest).mkdir(parents=True)
    message = stored(db, blobs, None, digest=digest)
    assert backfill(db, blobs, SETTINGS).kinds == {"unknown": 1}
    assert rows(db)[message].machine["reasons"][0].startswith("backfill: the raw bytes cannot be read")




def test_explain_says_when_a_kind_was_given_late(db: Database, tmp_path: Path) -> None:
    config = write_config(tmp_path, db)
    blobs = BlobStore(tmp_path / "blobs")
    message = stored(db, blobs, auto_reply())
    assert "kind: none (stored before classification" in invoke(config, "explain", str(message)).stdout
    invoke(config, "classify", "--backfill")
    shown = invoke(config, "explain", str(message)).stdout
    assert "kind: auto_reply" in shown and "(classified after it was stored" in shown
