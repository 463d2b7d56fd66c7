"""The story of issue 12 against the real servers (Dovecot IMAP, an aiosmtpd SMTP server, PostgreSQL) with the
shipped packs and the real daemon: a dunning letter bounces -> the row is bounced, the address flagged, no next
level goes to it, the owner gets a task, all on the timeline; an out-of-office reply -> dunning goes on and no
rule answers it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from maild.bounces import health
from maild.business.invoices import upsert_invoice
from maild.directory.service import add_contact, add_thirdparty
from maild.store.models import Event, Message, OutboxMessage, Task, ThirdParty
from tests.conftest import Mailbox
from tests.helpers import config_at, invoke
from tests.outbound.conftest import Sink
from tests.rules.test_packs_end_to_end import Clock, Home

INSTANCE = "nord01"


@pytest.fixture
def home(tmp_path: Path, pg_url: str, smtp_sink: Sink, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch) -> Home:
    monkeypatch.setenv("MAILD_TEST_IMAP_PASSWORD", mailbox.password)
    home = Home(tmp_path / "home", pg_url, smtp_sink)
    data = yaml.safe_load(home.file.read_text())
    data["sources"] = [mailbox.source(name="shared")]
    data["filing"]["action"] = "move"
    data["matching"]["instance_id"] = INSTANCE
    data["outbound"]["return_path"] = "bounces@nordlicht.example"
    (home.root / "templates" / "thanks").mkdir(parents=True)
    (home.root / "templates" / "thanks" / "subject.txt").write_text("Thank you for your mail\n")
    (home.root / "templates" / "thanks" / "body.txt").write_text("We received your mail.\n")
    # A rule that answers every mail of a customer: it must never answer an auto-reply (a mail loop).
    (home.root / "rules" / "answer.yaml").write_text(
        "rules:\n  - name: thank-for-every-mail\n    on:\n      event: mail.matched\n"
        "    if:\n      - not message.outbound\n    do:\n      - send: {template: thanks, to: message.from}\n")
    home.file.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    home.config = config_at(home.file)
    return home


def customer(home: Home) -> tuple[int, int]:
    db = home.db
    tp = add_thirdparty(db, name="Müller & Söhne KG", language="de")
    with db.engine.begin() as conn:
        conn.execute(ThirdParty.__table__.update().where(ThirdParty.__table__.c.id == tp)
                     .values(owner="lena@nordlicht.example"))
    buyer = add_contact(db, thirdparty_id=tp, name="Jürgen Weiß", addresses=["j.weiss@mueller.example"])
    upsert_invoice(db, ref="FA2611-0007", thirdparty_id=tp, contact_id=buyer, issued_on=date(2026, 10, 18),
                   due_on=date(2026, 11, 1), currency="EUR",
                   lines=[{"description": "Wartungsvertrag Q4", "quantity": "1", "unit_price": "1300.00",
                           "vat_rate": "19"}])
    return tp, buyer


def events(home: Home, tp: int) -> list[Any]:
    ev = Event.__table__
    with home.db.engine.connect() as conn:
        return list(conn.execute(select(ev).where(ev.c.thirdparty_id == tp).order_by(ev.c.id)))


def bounce_for(letter_from: str, verp: str, message_id: str) -> bytes:
    return (f"Return-Path: <>\r\nFrom: Mail Delivery System <MAILER-DAEMON@mx.mueller.example>\r\n"
            f"To: {verp}\r\nSubject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n"
            f"Date: Tue, 10 Nov 2026 09:01:00 +0000\r\nMessage-ID: <bounce-1@mx.mueller.example>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n"
            f"\r\n--b1\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.mueller.example.\r\n\r\n"
            f"<j.weiss@mueller.example>: host mx.mueller.example said: 550 5.1.1 <j.weiss@mueller.example>: "
            f"Recipient address rejected: User unknown in virtual mailbox table\r\n"
            f"\r\n--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.mueller.example\r\n\r\n"
            f"Final-Recipient: rfc822; j.weiss@mueller.example\r\nOriginal-Recipient: rfc822;j.weiss@mueller.example"
            f"\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <j.weiss@mueller.example>: "
            f"Recipient address rejected: User unknown in virtual mailbox table\r\n"
            f"\r\n--b1\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: {letter_from}\r\n"
            f"To: j.weiss@mueller.example\r\nMessage-ID: {message_id}\r\n\r\n--b1--\r\n").encode()


def test_a_bounced_dunning_letter_stops_dunning_to_that_address_and_tells_the_owner(
        home: Home, mailbox: Mailbox, smtp_sink: Sink, run_daemon: Callable[..., None]) -> None:
    tp, _ = customer(home)
    clock = Clock(datetime(2026, 11, 9, 9, 0, tzinfo=UTC))  # due + 8 days: level 1
    run_daemon(home.config, clock, lambda: len(home.sent()) >= 1, settle=1.0, what="the level-1 letter")
    [letter] = home.sent()
    [envelope] = smtp_sink.handler.received
    assert envelope.recipients == ["j.weiss@mueller.example"]
    assert envelope.sender.startswith(f"bounces+maild.{INSTANCE}.") and envelope.sender.endswith("@nordlicht.example")
    assert letter["Auto-Submitted"] == "auto-generated" and letter["X-Auto-Response-Suppress"] == "All"

    mailbox.append([bounce_for(str(letter["From"]), envelope.sender, str(letter["Message-ID"]))])
    clock.now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # due + 22 days: level 2 would be due now

    def told() -> bool:
        with home.db.engine.connect() as conn:
            return conn.execute(select(Task.__table__.c.id)).first() is not None
    run_daemon(home.config, clock, told, settle=4.0, what="the owner's task about the bounce")

    assert len(home.sent()) == 1, "no next level to the dead address, no answer to the notice"
    with home.db.engine.connect() as conn:
        row = conn.execute(select(OutboxMessage.__table__)).one()
        notice = conn.execute(select(Message.__table__).where(Message.__table__.c.kind == "bounce")).one()
        task = conn.execute(select(Task.__table__)).one()
    assert row.status == "bounced" and "5.1.1" in row.last_error
    assert health.lookup(home.db, "j.weiss@mueller.example").state == "undeliverable"
    # the invoice is held, "letter not delivered" (issue 13), with the owner's task: a person finds a new address
    assert task.owner == "lena@nordlicht.example" and "not delivered" in task.title and "FA2611-0007" in task.title
    assert home.invoice("FA2611-0007").dunning_level == 1
    types = [e.type for e in events(home, tp)]
    assert types.index("mail.sent") < types.index("mail.bounced") < types.index("task.created")
    bounced = next(e for e in events(home, tp) if e.type == "mail.bounced")
    assert bounced.message_id == notice.id and bounced.data["invoice_id"] == home.invoice("FA2611-0007").id
    timeline = invoke(home.file, "timeline", "Müller & Söhne KG").stdout
    assert "BOUNCED" in timeline and "to j.weiss@mueller.example: hard 5.1.1 user unknown; address undeliverable" \
        in timeline
    customers = [f for f in mailbox_folders(mailbox) if f.startswith("Customers") and "Müller" in f]
    assert customers and len(mailbox.uids(customers[0])[1]) == 1, "the notice is filed with the customer"


def test_a_bounced_dunning_letter_goes_to_the_billing_contact_and_says_so(
        home: Home, mailbox: Mailbox, smtp_sink: Sink, run_daemon: Callable[..., None]) -> None:
    tp, _ = customer(home)
    add_contact(home.db, thirdparty_id=tp, name="Rechnungswesen", addresses=["rechnung@mueller.example"],
                role="billing")
    clock = Clock(datetime(2026, 11, 9, 9, 0, tzinfo=UTC))
    run_daemon(home.config, clock, lambda: len(home.sent()) >= 1, settle=1.0, what="the level-1 letter")
    [letter] = home.sent()
    [envelope] = smtp_sink.handler.received
    mailbox.append([bounce_for(str(letter["From"]), envelope.sender, str(letter["Message-ID"]))])
    run_daemon(home.config, clock, lambda: len(home.sent()) >= 2, settle=3.0, what="the letter to billing")
    sent = home.sent()
    assert [m["To"].addresses[0].addr_spec for m in sent] == ["j.weiss@mueller.example", "rechnung@mueller.example"]
    assert [p.get_filename() for p in sent[1].walk() if p.get_filename()] == ["FA2611-0007.pdf"]
    notes = [e for e in events(home, tp) if e.type == "note.added"]
    assert len(notes) == 1 and "sent to the billing contact instead" in notes[0].data["text"]
    with home.db.engine.connect() as conn:
        [task] = conn.execute(select(Task.__table__)).all()
    assert "letter not delivered" in task.title, "the owner still learns the letter did not arrive"


def test_an_out_of_office_reply_does_not_pause_dunning_and_gets_no_answer(
        home: Home, mailbox: Mailbox, smtp_sink: Sink, run_daemon: Callable[..., None]) -> None:
    tp, _ = customer(home)
    clock = Clock(datetime(2026, 11, 9, 9, 0, tzinfo=UTC))
    run_daemon(home.config, clock, lambda: len(home.sent()) >= 1, settle=1.0, what="the level-1 letter")
    [letter] = home.sent()
    ooo = EmailMessage()
    ooo["From"] = "Jürgen Weiß <j.weiss@mueller.example>"
    ooo["To"] = "billing@nordlicht.example"
    ooo["Subject"] = "Automatische Antwort: " + str(letter["Subject"])
    ooo["Date"] = "Mon, 09 Nov 2026 09:05:00 +0000"
    ooo["Message-ID"] = "<ooo-1@mueller.example>"
    ooo["In-Reply-To"] = str(letter["Message-ID"])
    ooo["Auto-Submitted"] = "auto-replied"
    ooo.set_content("Ich bin bis 20.11. nicht im Büro und ab dem 23.11.2026 wieder erreichbar.")
    # A person of another customer writes at the same time: the answering rule does answer people.
    add_thirdparty(home.db, name="Other AG", addresses=["eva@other.example"])
    person = EmailMessage()
    person["From"] = "Eva <eva@other.example>"
    person["To"] = "billing@nordlicht.example"
    person["Subject"] = "Frage"
    person["Message-ID"] = "<person-1@other.example>"
    person.set_content("Eine Frage zu Ihrem Angebot.")
    mailbox.append([ooo.as_bytes(), person.as_bytes()])
    clock.now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # due + 22 days: level 2

    run_daemon(home.config, clock, lambda: len(home.sent()) >= 3, settle=4.0, what="level 2 and the answer to Eva")
    sent = home.sent()
    to = [m["To"].addresses[0].addr_spec for m in sent]
    assert sorted(to) == ["eva@other.example", "j.weiss@mueller.example", "j.weiss@mueller.example"]
    assert [str(m["Subject"]) for m in sent if m["To"].addresses[0].addr_spec == "eva@other.example"] == \
        ["Thank you for your mail"], "the answering rule answers people, not the auto-reply"
    assert home.invoice("FA2611-0007").dunning_level == 2, "the out-of-office did not pause dunning"
    with home.db.engine.connect() as conn:
        kind, machine = conn.execute(select(Message.__table__.c.kind, Message.__table__.c.machine)
                                     .where(Message.__table__.c.header_message_id == "<ooo-1@mueller.example>")).one()
    assert kind == "auto_reply" and machine["return_date"] == "2026-11-23"
    assert "mail.matched" in [e.type for e in events(home, tp)], "filed like any mail of the customer"


def mailbox_folders(mailbox: Mailbox) -> list[str]:
    with mailbox.server.client(mailbox.user, mailbox.password) as imap:
        return [name for _flags, _delim, name in imap.list_folders()]
