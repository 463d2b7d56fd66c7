"""A shared inbox sorts itself, against the real Dovecot: realistic threads, triage, assign and learn."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from maild.daemon import Daemon
from maild.directory.service import add_contact, add_document, add_thirdparty
from maild.store.db import Database
from maild.store.models import Event, MessageMatch, TrackingId
from maild.tracking import ids as tracking
from tests.conftest import Mailbox
from tests.helpers import config_at, invoke, write_config

INSTANCE = "inst01"


def mail(sender: str, subject: str, body: str = "Hello", message_id: str | None = None,
         in_reply_to: str | None = None, to: str = "sales@example.com") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or f"<{abs(hash((sender, subject)))}@mail.example>"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(body)
    return msg.as_bytes()


def folder_subjects(box: Mailbox) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with box.server.client(box.user, box.password) as imap:
        for _flags, _delim, name in imap.list_folders():
            info = imap.select_folder(name, readonly=True)
            if info.get(b"EXISTS"):
                data = imap.fetch(imap.search("ALL"), ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
                out[name] = sorted(v[b"BODY[HEADER.FIELDS (SUBJECT)]"].decode().strip().removeprefix("Subject: ")
                                   for v in data.values())
    return out


@pytest.fixture
def inbox(tmp_path: Path, mailbox: Mailbox, db_url: str) -> tuple[Path, Database, dict[str, int]]:
    filing = {"action": "move", "matched_folder": "Customers/{{ thirdparty.name }}", "triage_folder": "Triage",
              "keywords": ["maild"]}
    config = write_config(tmp_path, db_url, [mailbox.source(filing=filing)])
    text = config.read_text() + f"matching:\n  instance_id: {INSTANCE}\n  own_domains: [example.com]\n"
    config.write_text(text)
    db = Database(config_at(config).database_url)
    db.upgrade()
    ids = {
        "acme": add_thirdparty(db, name="ACME Corp", domains=["acme.example"]),
        "mueller": add_thirdparty(db, name="Müller / Söhne GmbH", domains=["mueller.example"]),
        "alpha": add_thirdparty(db, name="Alpha GmbH", domains=["shared.example"]),
        "beta": add_thirdparty(db, name="Beta GmbH", domains=["shared.example"]),
    }
    add_contact(db, thirdparty_id=ids["acme"], name="John Smith",
                addresses=["john@acme.example", "J.Smith+news@ACME.example"])
    add_contact(db, thirdparty_id=ids["mueller"], name="Anna Becker", addresses=["anna@mueller.example"])
    add_document(db, ref="FA2611-0007", thirdparty_id=ids["beta"], kind="invoice")
    with db.engine.begin() as conn:  # what maild's outbox records when it sends (issue: outbound mail)
        conn.execute(TrackingId.__table__.insert().values(token="tok-mueller-01", thirdparty_id=ids["mueller"]))
    return config, db, ids


def test_shared_inbox_sorts_itself(inbox: tuple[Path, Database, dict[str, int]], mailbox: Mailbox) -> None:
    config, db, ids = inbox
    sent_id = tracking.message_id(INSTANCE, "tok-mueller-01", "example.com")
    mailbox.append([
        mail("John Smith <john@acme.example>", "order 1"),
        mail("John <j.smith@acme.example>", "order 2 from his second address"),
        mail("Anna Becker <anna.private@gmail.com>", "Re: our offer", in_reply_to=sent_id),
        mail("Colleague <colleague@example.com>", "Fwd: Anfrage",
             body="---------- Forwarded message ---------\nFrom: Anna Becker <anna@mueller.example>\n\nBitte..."),
        mail("Bob <bob@gmail.com>", "hello from a stranger"),
        mail("New Person <new@shared.example>", "who am I"),
        mail("New Person <new@shared.example>", "Question on invoice FA2611-0007"),
        mail("Spoofed <x@gmail.com>", "other instance", in_reply_to="<maild.other99.tok-mueller-01@x.example>"),
    ])
    report = Daemon(config_at(config)).ingest_once()
    assert report.errors == {}
    Daemon(config_at(config)).ingest_once()  # the filing of the last batch is done by the next pass at the latest
    folders = folder_subjects(mailbox)
    assert "INBOX" not in folders, "the shared inbox is empty: everything was filed"
    assert folders["Customers/ACME Corp"] == ["order 1", "order 2 from his second address"]
    assert folders[f"Customers/Müller - Söhne GmbH ~{ids['mueller']}"] == ["Fwd: Anfrage", "Re: our offer"], \
        "the slash could not stay: the third party's id keeps the folder its own"
    assert folders["Customers/Beta GmbH"] == ["Question on invoice FA2611-0007"]
    assert folders["Triage"] == ["hello from a stranger", "other instance", "who am I"]

    with db.engine.connect() as conn:
        decisions = {row.status for row in conn.execute(select(MessageMatch.__table__))}
        timeline = conn.execute(select(Event.__table__.c.type).where(
            Event.__table__.c.thirdparty_id == ids["mueller"]).order_by(Event.__table__.c.id)).scalars().all()
    assert decisions == {"matched", "unmatched", "ambiguous"}
    assert timeline.count("mail.matched") == 2 and timeline.count("mail.filed") == 2

    queue = invoke(config, "triage", "list").stdout
    assert "hello from a stranger" in queue and "equally likely: Alpha GmbH, Beta GmbH" in queue
    stranger = next(line.split()[0] for line in queue.splitlines() if "hello from a stranger" in line)
    explained = invoke(config, "explain", stranger).stdout
    assert "decision: unmatched" in explained and "gmail.com is a free-mail provider" in explained

    assigned = invoke(config, "triage", "assign", stranger, "ACME Corp", "--learn").stdout
    assert "assigned to ACME Corp; sender learned as contact" in assigned
    mailbox.append([mail("Bob <bob@gmail.com>", "second mail from the learned sender")])
    Daemon(config_at(config)).ingest_once()
    Daemon(config_at(config)).ingest_once()
    folders = folder_subjects(mailbox)
    assert folders["Customers/ACME Corp"] == [
        "hello from a stranger", "order 1", "order 2 from his second address", "second mail from the learned sender"]
    assert "hello from a stranger" not in folders["Triage"]
    assert "decision: assigned" in invoke(config, "explain", stranger).stdout


def test_a_reply_in_the_same_batch_as_the_mail_it_answers_joins_its_thread(
        inbox: tuple[Path, Database, dict[str, int]], mailbox: Mailbox) -> None:
    """John writes from ACME; a colleague of his answers from a free-mail address before maild's next pass."""
    config, db, ids = inbox
    mailbox.append([
        mail("John Smith <john@acme.example>", "offer", message_id="<offer-1@acme.example>"),
        mail("Jane <jane.private@gmail.com>", "Re: offer", in_reply_to="<offer-1@acme.example>"),
        mail("Jane <jane.private@gmail.com>", "Re: Re: offer", in_reply_to="<offer-1@acme.example>"),
    ])
    assert Daemon(config_at(config)).ingest_once().errors == {}
    with db.engine.connect() as conn:
        rows = conn.execute(select(MessageMatch.__table__.c.thirdparty_id, MessageMatch.__table__.c.reason)
                            .order_by(MessageMatch.__table__.c.message_id)).all()
    assert [row.thirdparty_id for row in rows] == [ids["acme"]] * 3
    assert rows[1].reason == "reply in the thread of <offer-1@acme.example>"
