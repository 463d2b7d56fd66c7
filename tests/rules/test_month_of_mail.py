"""A month of an office's mail with the shipped packs, on the real servers (Dovecot, PostgreSQL, an SMTP server) and
the real daemon, the rules' clock moved by the test: eight overdue invoices, each with one thing happening to it
(mail about something else, "we paid" in a reminder's thread, a promise to pay, a dispute, a payment, an
out-of-office reply, a bounce, nothing at all), and three meetings. At the end every invoice is paid, dunned at
the level its age calls for, disputed by a person, or held with a named person's open task and the reason."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from pypdf import PdfReader
from sqlalchemy import select

from maild.business.invoices import upsert_invoice
from maild.business.meetings import add_meeting
from maild.directory.service import add_contact, add_thirdparty
from maild.own_mail import OwnMail
from maild.store.models import Event, InvoiceHold, Task
from tests.conftest import Mailbox
from tests.helpers import config_at, invoke
from tests.outbound.conftest import Sink
from tests.rules.test_packs_end_to_end import Clock, Home
from tests.rules.test_packs_end_to_end import run_daemon as run_daemon  # a fixture

OWNER = "lena.berg@nordlicht.example"
FINANCE = "finance@nordlicht.example"
CASES = ("unrelated", "paid-in-thread", "promise", "dispute", "payment", "out-of-office", "bounce", "nothing")


def ref(n: int) -> str:
    return f"FA2611-000{n}"


def inbound(sender: str, subject: str, body: str, when: str, *, in_reply_to: str | None = None,
            to: str = "billing@nordlicht.example", **headers: str) -> bytes:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"], mail["Date"] = sender, to, subject, when
    mail["Message-ID"] = f"<{abs(hash((sender, subject, when)))}@mail.example>"
    if in_reply_to:
        mail["In-Reply-To"] = mail["References"] = in_reply_to
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    mail.set_content(body)
    return mail.as_bytes()


def dsn(verp: str, recipient: str, message_id: str) -> bytes:
    """A delivery status notification (RFC 3464) of a hard bounce, as Postfix writes one."""
    host = "mx." + recipient.rpartition("@")[2]
    return (f"Return-Path: <>\r\nFrom: Mail Delivery System <MAILER-DAEMON@{host}>\r\nTo: {verp}\r\n"
            f"Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n"
            f"Date: Tue, 10 Nov 2026 09:01:00 +0000\r\nMessage-ID: <bounce-1@{host}>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n--b1\r\n"
            f"Content-Type: text/plain\r\n\r\nThis is the mail system at host {host}.\r\n\r\n<{recipient}>: "
            f"550 5.1.1 User unknown\r\n\r\n--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
            f"Reporting-MTA: dns; {host}\r\n\r\nFinal-Recipient: rfc822; {recipient}\r\nAction: failed\r\n"
            f"Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <{recipient}>: User unknown\r\n\r\n--b1\r\n"
            f"Content-Type: text/rfc822-headers\r\n\r\nFrom: billing@nordlicht.example\r\nTo: {recipient}\r\n"
            f"Message-ID: {message_id}\r\n\r\n--b1--\r\n").encode()


def customers_of(sent: list[EmailMessage]) -> list[EmailMessage]:
    return [m for m in sent if not m["To"].addresses[0].addr_spec.endswith("@nordlicht.example")]


def pdf_texts(message: EmailMessage) -> dict[str, str]:
    return {part.get_filename(): PdfReader(io.BytesIO(part.get_content())).pages[0].extract_text()
            for part in message.walk() if part.get_filename()}


def test_a_month_of_an_offices_mail(tmp_path: Path, pg_url: str, smtp_sink: Sink, mailbox: Mailbox,
                                    monkeypatch: pytest.MonkeyPatch, run_daemon: Callable[..., None]) -> None:
    monkeypatch.setenv("MAILD_TEST_IMAP_PASSWORD", mailbox.password)
    home = Home(tmp_path / "home", pg_url, smtp_sink)
    data = yaml.safe_load(home.file.read_text())
    data["sources"] = [mailbox.source(name="shared")]
    data["filing"]["action"] = "move"
    data["rules"]["timezone"] = "Europe/Berlin"
    data["dunning"] = {"hold_owner": FINANCE, "payment_days": 10}
    data["outbound"]["company"] = {"name": "Nordlicht Software GmbH", "street": "Große Elbstraße 145",
                                   "zip": "22767", "town": "Hamburg", "country": "Deutschland",
                                   "iban": "DE89 3704 0044 0532 0130 00", "bic": "COBADEFFXXX"}
    home.file.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    home.config = config_at(home.file)
    db = home.db
    tps: dict[int, int] = {}
    for n in range(1, 9):
        tp = add_thirdparty(db, name=f"Kunde {n} GmbH", language="de", domains=[f"kunde{n}.example"],
                            owner=None if n == 7 else OWNER,
                            postal_address={"street": f"Hafenstraße {n}", "zip": "20457", "town": "Hamburg"})
        contact = add_contact(db, thirdparty_id=tp, name=f"Greta Nord {n}", addresses=[f"buchhaltung@kunde{n}.example"],
                              letter={"salutation": "Frau", "title": "Dr.", "first_name": "Greta", "last_name": "Nord"})
        upsert_invoice(db, ref=ref(n), thirdparty_id=tp, contact_id=contact, issued_on=date(2026, 10, 18),
                       due_on=date(2026, 11, 1), amount="1190.00")
        tps[n] = tp
    own = OwnMail.from_config(home.config)
    meetings = {n: add_meeting(db, own, subject=f"Projekt {n}", start_at=datetime(2026, 11, 19, 13, tzinfo=UTC),
                               end_at=datetime(2026, 11, 19, 14, 30, tzinfo=UTC), thirdparty_id=tps[n],
                               attendees=[OWNER, f"buchhaltung@kunde{n}.example"], owner=OWNER)
                for n in (1, 6, 8)}
    clock = Clock(datetime(2026, 11, 9, 9, 0, tzinfo=UTC))  # due + 8 days: level 1

    # --- 9 November: the first reminder for all eight --------------------------------------------------------
    run_daemon(home.config, clock, lambda: len(customers_of(home.sent())) >= 8, settle=True, what="level 1")
    first = {m["To"].addresses[0].addr_spec: m for m in customers_of(home.sent())}
    assert len(first) == 8
    reminder = {n: first[f"buchhaltung@kunde{n}.example"]["Message-ID"] for n in range(1, 9)}

    # --- 10 November: the customers answer ------------------------------------------------------------------
    day = "Tue, 10 Nov 2026 10:00:00 +0100"
    envelope = next(e for e in smtp_sink.handler.received if e.recipients == ["buchhaltung@kunde7.example"])
    bounce = dsn(envelope.sender, "buchhaltung@kunde7.example", reminder[7])
    mailbox.append([
        inbound("buchhaltung@kunde1.example", "Neue Bestellung", "Bitte liefern Sie 20 Stück.", day),
        inbound("buchhaltung@kunde2.example", "Re: Zahlungserinnerung", "Wir haben gestern bezahlt.", day,
                in_reply_to=reminder[2]),
        inbound("buchhaltung@kunde3.example", "Re: Zahlungserinnerung", "Wir zahlen bis zum 5. Dezember.", day,
                in_reply_to=reminder[3]),
        inbound("buchhaltung@kunde4.example", f"Widerspruch {ref(4)}", "Die Lieferung war unvollständig.", day),
        inbound("buchhaltung@kunde6.example", "Automatische Antwort: Zahlungserinnerung",
                "Ich bin bis 20.11. nicht im Büro. Ihre Mail wird nicht weitergeleitet.", day,
                in_reply_to=reminder[6], Auto_Submitted="auto-replied"),
        bounce,
    ])
    clock.now = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)

    def holds_made() -> bool:
        with db.engine.connect() as conn:
            return len(conn.execute(select(InvoiceHold.__table__)).all()) >= 4

    run_daemon(home.config, clock, holds_made, settle=True, what="the answers to hold their invoices")
    statuses = {n: home.invoice(ref(n)).status for n in range(1, 9)}
    assert statuses == {1: "open", 2: "held", 3: "held", 4: "held", 5: "open", 6: "open", 7: "held", 8: "open"}

    # The people decide.
    assert "waits for the payment promised by 2026-12-05" in invoke(
        home.file, "invoice", "promise", ref(3), "--until", "2026-12-05").stdout
    invoke(home.file, "invoice", "dispute", ref(4), "--reason", "Lieferung unvollständig")
    invoke(home.file, "invoice", "pay", ref(5), "1190.00", "--date", "2026-11-11")

    # --- 19 November: meetings; "thanks for today" from Kunde 1, a colleague writes to Kunde 8 ---------------
    evening = "Thu, 19 Nov 2026 17:00:00 +0100"
    mailbox.append([
        inbound("buchhaltung@kunde1.example", "Danke für heute", "Danke für das gute Gespräch!", evening),
        inbound(OWNER, "Unterlagen zum Termin", "Anbei die Folien.", evening, to="buchhaltung@kunde8.example"),
    ])

    # --- 23 November: level 2 (with the letter) where nothing holds it; escalation; one follow-up -------------
    clock.now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    run_daemon(home.config, clock, lambda: len(customers_of(home.sent())) >= 12, settle=True, what="level 2")
    batch = customers_of(home.sent())[8:]
    assert sorted(m["To"].addresses[0].addr_spec for m in batch) == [
        "buchhaltung@kunde1.example", "buchhaltung@kunde6.example", "buchhaltung@kunde6.example",
        "buchhaltung@kunde8.example"]
    followup, = [m for m in batch if "Projekt 6" in m["Subject"]]
    assert "Lena Berg" in followup.get_body(("plain",)).get_content(), "signed by the meeting's owner"
    for letter in [m for m in batch if "Projekt" not in m["Subject"]]:
        (name, text), = pdf_texts(letter).items()
        assert name.startswith("Mahnung-2-FA2611-000") and "2. Mahnung" in text
        assert "Sehr geehrte Frau Dr. Nord," in text and "Frau Dr. Greta Nord" in text and "bis zum 03.12.2026" in text
    escalated = sorted(e.data["ref"] for e in _events(home, "invoice.hold_escalated"))
    assert escalated == [ref(2), ref(7)]

    # --- 7 December: level 3; the promise (5 December) passed without payment --------------------------------
    clock.now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    run_daemon(home.config, clock, lambda: len(customers_of(home.sent())) >= 16, settle=True, what="level 3")
    sent = customers_of(home.sent())
    assert len(sent) == 16, "nothing twice, nothing held or paid dunned"
    assert sorted(m["To"].addresses[0].addr_spec for m in sent[12:]) == [
        f"buchhaltung@kunde{n}.example" for n in (1, 3, 6, 8)]

    # --- the end of the month: every invoice accounted for ----------------------------------------------------
    tasks = _rows(home, Task.__table__)
    for n, case in zip(range(1, 9), CASES, strict=True):
        invoice = home.invoice(ref(n))
        if invoice.status == "paid":
            assert case == "payment"
        elif invoice.status == "disputed":
            assert case == "dispute"
            assert _events(home, "invoice.disputed")[0].data["reason"] == "Lieferung unvollständig"
        elif invoice.status == "held":
            open_tasks = [t for t in tasks if t.invoice_id == invoice.id and t.status == "open"]
            assert open_tasks and all(t.owner for t in open_tasks), (case, open_tasks)
            held = [e.data for e in _events(home, "invoice.held") if e.data["ref"] == invoice.ref]
            assert held and held[-1]["reason"], case
        else:
            assert (invoice.status, invoice.dunning_level) == ("open", 3), (case, invoice.status)
    assert [home.invoice(ref(n)).status for n in range(1, 9)] == [
        "open", "held", "open", "disputed", "paid", "open", "held", "open"]
    held = {e.data["ref"]: e.data for e in _events(home, "invoice.held")}
    assert held[ref(2)]["kind"] == "reply" and held[ref(2)]["owner"] == OWNER
    assert held[ref(7)]["kind"] == "bounce" and held[ref(7)]["owner"] == FINANCE
    assert held[ref(7)]["reason"].startswith("letter not delivered")
    shown = invoke(home.file, "invoice", "show", ref(2)).stdout
    assert "held since 2026-11-10" in shown and f"who decides: {OWNER}" in shown, shown
    shown = invoke(home.file, "invoice", "show", ref(8)).stdout
    assert "next step: dunning-level-3-repeat from " in shown, shown
    timeline = invoke(home.file, "timeline", str(tps[2])).stdout
    assert f"invoice   {ref(2)} HELD: mail from buchhaltung@kunde2.example ('Re: Zahlungserinnerung') answers a " \
           f"reminder (decides: {OWNER}, task #" in timeline, timeline
    assert f"invoice   {ref(2)} still held since 2026-11-10: escalated to {OWNER}" in timeline
    why = invoke(home.file, "rules", "why", "dunning-level-3", f"invoice:{ref(2)}", "--at", "2026-12-07", check=False)
    assert why.returncode == 3 and "invoice.status = 'held'" in why.stdout

    # Meetings: a follow-up only where nobody was in contact after the meeting; times in the rules' time zone.
    followups = [m for m in home.sent() if "Projekt" in m["Subject"]]
    assert [m["To"].addresses[0].addr_spec for m in followups] == ["buchhaltung@kunde6.example"]
    timeline = invoke(home.file, "timeline", str(tps[6])).stdout
    assert '"Projekt 6" 2026-11-19 14:00 - 15:30' in timeline, timeline
    assert meetings


def _events(home: Home, type_: str) -> list[Any]:
    ev = Event.__table__
    with home.db.engine.connect() as conn:
        return list(conn.execute(select(ev).where(ev.c.type == type_).order_by(ev.c.id)))


def _rows(home: Home, table: Any) -> list[Any]:
    with home.db.engine.connect() as conn:
        return list(conn.execute(select(table).order_by(table.c.id)))

