"""Holds: mail that needs a person holds an invoice in dunning visibly (status, task, timeline); other mail from the
same company, machine mail and our own mail hold nothing; resume, promise, dispute, payment and escalation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from maild.business import holds
from maild.business.invoices import record_payment
from maild.rules.engine import RulesEngine
from maild.rules.model import RuleSet
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.store.models import Bounce, Message, MessageMatch, OutboxMessage, Task
from tests.classify.test_backfill import bounce
from tests.rules.test_engine_support import (
    add_event,
    customer,
    events,
    invoice,
    invoice_row,
    make_config,
    on_sweep,
    outbox_rows,
    rule,
    rules,
    send,
    set_,
)

D = timedelta(days=1)
DUE = date(2026, 11, 3)


def pack() -> RuleSet:
    return rules(
        rule("level-1", on_sweep("invoice", "due_on", 7 * D, 21 * D),
             [send(), set_(invoice__dunning_level="1", invoice__last_dunned_at="now")],
             conditions=('invoice.status == "open"', "invoice.dunning_level < 1")),
        rule("level-2", on_sweep("invoice", "due_on", 21 * D),
             [send(), set_(invoice__dunning_level="2", invoice__last_dunned_at="now")],
             conditions=('invoice.status == "open"', "invoice.dunning_level < 2")))


def mail(db: Database, tp: int, when: datetime, subject: str, body: str = "", sender: str = "anna@mueller.example",
         in_reply_to: str | None = None, *, kind: str | None = "human", blobs: Path | None = None,
         raw: bytes | None = None, **headers: str) -> int:
    """An inbound mail matched to the third party, and its `mail.matched` event (as the matching stage writes).
    `kind=None`: stored before classification existed, its raw bytes (`raw`, else built from the other arguments)
    in the blob store `blobs`."""
    digest = f"{abs(hash((tp, subject, body, when))):064x}"[:64]
    if kind is None:
        assert blobs is not None, "mail without a kind needs its raw bytes"
        digest = BlobStore(blobs).put(raw or raw_mail(sender, subject, body, when, in_reply_to, **headers))
    with db.engine.begin() as conn:
        message_id = conn.execute(Message.__table__.insert().returning(Message.__table__.c.id).values(
            raw_sha256=digest, size=10, from_addr=sender, kind=kind,
            subject=subject, text_body=body, date=when, ingested_at=when, in_reply_to=in_reply_to,
            references=[in_reply_to] if in_reply_to else [], to_addrs=[], cc_addrs=[], reply_to=[],
            defects=[])).scalar_one()
        conn.execute(MessageMatch.__table__.insert().values(
            message_id=message_id, status="matched", thirdparty_id=tp, matcher="thread" if in_reply_to else "address",
            confidence=1.0, reason="test", verdicts=[], decided_at=when))
    add_event(db, "mail.matched", tp, message_id, when=when, matcher="thread" if in_reply_to else "address")
    return int(message_id)


def raw_mail(sender: str, subject: str, body: str, when: datetime, in_reply_to: str | None = None,
             **headers: str) -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, "billing@ourco.example", subject
    message["Date"] = format_datetime(when)
    message["Message-ID"] = f"<{abs(hash((sender, subject, when)))}@mueller.example>"
    if in_reply_to:
        message["In-Reply-To"] = message["References"] = in_reply_to
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message.as_bytes()


def tasks(db: Database) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(Task.__table__).order_by(Task.__table__.c.id)))


class Office:
    def __init__(self, db: Database, tmp_path: Path, **config: Any) -> None:
        self.db = db
        self.config = make_config(tmp_path, db, **config)
        self.tp, _ = customer(db)
        self.now = datetime(2026, 11, 12, 9, tzinfo=UTC)  # due + 9 days: level 1
        self.engine = RulesEngine(self.config, db, pack(), clock=lambda: self.now)

    def at(self, moment: datetime) -> int:
        self.now = moment
        return self.engine.sweep()

    def status(self, invoice_id: int) -> str:
        return str(invoice_row(self.db, invoice_id).status)


def test_a_reply_in_a_reminders_thread_holds_it_and_unrelated_mail_does_not(db: Database, tmp_path: Path) -> None:
    office = Office(db, tmp_path)
    first = invoice(db, office.tp, "FA2611-0105", DUE, amount="1190.00")
    other = invoice(db, office.tp, "FA2611-0106", DUE)
    assert office.at(office.now) == 4  # level 1 for both
    reminder = next(row for row in outbox_rows(db) if row.idempotency_key.startswith("level-1:invoice:1:"))

    mail(db, office.tp, office.now + D, "Neue Bestellung", "Bitte 20 Stück liefern.")  # about something else
    assert office.at(office.now + 2 * D) == 0
    assert (office.status(first), office.status(other)) == ("open", "open")

    message = mail(db, office.tp, office.now + D, "Re: Zahlungserinnerung",
                   "Wir prüfen das.\n\n> Falls Sie bereits bezahlt haben ...", in_reply_to=reminder.header_message_id)
    office.at(office.now + D)
    assert (office.status(first), office.status(other)) == ("held", "open")
    task, = tasks(db)
    assert task.owner == "owner@ourco.example" and task.invoice_id == first and task.message_id == message
    assert task.title == ("Invoice FA2611-0105 is held: mail from anna@mueller.example ('Re: Zahlungserinnerung') "
                          "answers a reminder")
    held, = events(db, "invoice.held")
    assert held.data["kind"] == "reply" and held.data["task_id"] == task.id and held.message_id == message
    with db.engine.connect() as conn:
        state = holds.active(conn, first)
    assert state is not None and state.owner == "owner@ourco.example" and state.kind == "reply"

    # Three weeks after the due date: level 2 for the other invoice only; the held one waits, visibly.
    assert office.at(datetime(2026, 11, 25, 9, tzinfo=UTC)) == 2
    explanation = office.engine.explain("level-2", f"invoice:{first}")
    assert not explanation.fires and ("invoice.status", "'held'") in explanation.conditions[0].seen
    assert explanation.notes == ["held since 2026-11-15T10:00+01:00: mail from anna@mueller.example "
                                 "('Re: Zahlungserinnerung') answers a reminder; decides: owner@ourco.example"]
    # The same mail seen again holds nothing twice.
    assert office.engine.hold_watch.examine(message, office.tp) == 0

    with db.engine.begin() as conn:
        assert holds.resume(conn, "FA2611-0105", office.now)
    assert office.status(first) == "open"
    assert office.at(office.now + timedelta(hours=1)) == 2  # the level its age calls for
    assert invoice_row(db, first).dunning_level == 2


def test_number_phrase_machine_and_own_mail(db: Database, tmp_path: Path) -> None:
    office = Office(db, tmp_path, dunning={"hold_owner": "finance@ourco.example"})
    first = invoice(db, office.tp, "FA2611-0105", DUE)
    second = invoice(db, office.tp, "FA2611-0106", DUE)
    later = invoice(db, office.tp, "FA2611-0107", DUE + 30 * D)  # not due yet: not in dunning
    office.at(office.now)
    mail(db, office.tp, office.now, "Automatische Antwort: Zahlungserinnerung", "Ich bin bis 20.11. nicht da. "
         "Rechnung FA2611-0105 wurde bezahlt.", kind="auto_reply")
    mail(db, office.tp, office.now, "Undelivered Mail Returned to Sender", "FA2611-0105",
         sender="MAILER-DAEMON@mueller.example", kind="bounce")
    mail(db, office.tp, office.now, "FA2611-0105", "Wir haben bezahlt", sender="billing@ourco.example")  # ours
    office.at(office.now + timedelta(hours=1))
    assert [office.status(i) for i in (first, second, later)] == ["open", "open", "open"]

    mail(db, office.tp, office.now, "Frage zu FA2611-0106", "Die Menge stimmt nicht.")
    office.at(office.now + timedelta(hours=1))
    assert [office.status(i) for i in (first, second, later)] == ["open", "held", "open"]
    mail(db, office.tp, office.now, "Kurze Info", "Wir haben gestern ÜBERWIESEN.")
    office.at(office.now + timedelta(hours=1))
    assert [office.status(i) for i in (first, second, later)] == ["held", "held", "open"]
    kinds = [(e.data["ref"], e.data["kind"], e.data["reason"]) for e in events(db, "invoice.held")]
    assert kinds == [("FA2611-0106", "number", "mail from anna@mueller.example ('Frage zu FA2611-0106') names "
                                               "invoice FA2611-0106"),
                     ("FA2611-0105", "phrase", "mail from anna@mueller.example ('Kurze Info') says 'ÜBERWIESEN'"),
                     ("FA2611-0106", "phrase", "mail from anna@mueller.example ('Kurze Info') says 'ÜBERWIESEN'")]
    # The third party has an owner; the configured default is for those without one.
    assert {t.owner for t in tasks(db)} == {"owner@ourco.example"}


def test_mail_stored_before_classification_is_judged_by_the_chain(db: Database, tmp_path: Path) -> None:
    """No kind yet (stored before classification, the backfill not there yet): classified on the spot from its raw
    bytes, its kind stored; no sender or subject patterns beside the chain."""
    office = Office(db, tmp_path)
    blobs = office.config.blob_dir
    first = invoice(db, office.tp, "FA2611-0105", DUE)
    second = invoice(db, office.tp, "FA2611-0106", DUE)
    office.at(office.now)
    reminder = next(row for row in outbox_rows(db) if row.idempotency_key.startswith(f"level-1:invoice:{first}:"))
    assert reminder.tracking_token

    ooo = mail(db, office.tp, office.now, "Re: Zahlungserinnerung", "Ich bin bis 20.11. nicht da. FA2611-0106 "
               "ist bezahlt.", kind=None, blobs=blobs, Auto_Submitted="auto-replied")  # no tell-tale subject
    lost = mail(db, office.tp, office.now, "FA2611-0106", "Wir haben bezahlt.", kind=None,
                blobs=tmp_path / "elsewhere")  # its raw bytes are not in the store
    office.at(office.now + timedelta(hours=1))
    assert (office.status(first), office.status(second)) == ("open", "open")
    assert (kind_of(db, ooo), kind_of(db, lost)) == ("auto_reply", "unknown")

    # A bounce of the first one's reminder, stored before classification: the invoice is held, nothing else
    # follows after the fact (no bounce records, the letter's row as it was: docs/machine-mail.md).
    notice = mail(db, office.tp, office.now, "Undelivered Mail Returned to Sender", "", kind=None, blobs=blobs,
                  sender="MAILER-DAEMON@mx.mueller.example",
                  raw=bounce("anna@mueller.example", reminder.header_message_id))
    people = mail(db, office.tp, office.now, "Frage zu FA2611-0106", "Die Menge stimmt nicht.", kind=None,
                  blobs=blobs)
    office.at(office.now + timedelta(hours=1))
    assert (office.status(first), office.status(second)) == ("held", "held")
    assert (kind_of(db, notice), kind_of(db, people)) == ("bounce", "human")
    reasons = {e.data["ref"]: (e.data["kind"], e.data["reason"]) for e in events(db, "invoice.held")}
    assert reasons["FA2611-0105"] == ("bounce", "letter not delivered: Undelivered Mail Returned to Sender (from "
                                                "MAILER-DAEMON@mx.mueller.example)")
    assert reasons["FA2611-0106"][0] == "number"
    with db.engine.connect() as conn:
        assert conn.execute(select(Bounce.__table__)).first() is None
        assert conn.execute(select(OutboxMessage.__table__.c.status).where(
            OutboxMessage.__table__.c.id == reminder.id)).scalar_one() == reminder.status != "bounced"


def test_with_classification_off_every_mail_is_a_persons(db: Database, tmp_path: Path) -> None:
    office = Office(db, tmp_path, machine_mail={"classify": False})
    held = invoice(db, office.tp, "FA2611-0105", DUE)
    office.at(office.now)
    ooo = mail(db, office.tp, office.now, "Automatische Antwort", "FA2611-0105 ist bezahlt.", kind=None,
               blobs=office.config.blob_dir, Auto_Submitted="auto-replied")
    office.at(office.now + timedelta(hours=1))
    assert office.status(held) == "held" and kind_of(db, ooo) is None


def kind_of(db: Database, message_id: int) -> str | None:
    with db.engine.connect() as conn:
        return conn.execute(select(Message.__table__.c.kind).where(Message.__table__.c.id == message_id)).scalar_one()


def test_promise_dispute_payment_and_escalation(db: Database, tmp_path: Path) -> None:
    office = Office(db, tmp_path, dunning={"hold_escalate_days": 7})
    promised = invoice(db, office.tp, "FA-P", DUE)
    disputed = invoice(db, office.tp, "FA-D", DUE)
    paid = invoice(db, office.tp, "FA-Z", DUE, amount="50.00")
    forgotten = invoice(db, office.tp, "FA-F", DUE)
    office.at(office.now)
    mail(db, office.tp, office.now, "FA-P FA-D FA-Z FA-F", "Wir melden uns.")
    office.at(office.now + timedelta(hours=1))
    assert {office.status(i) for i in (promised, disputed, paid, forgotten)} == {"held"}
    with db.engine.begin() as conn:
        holds.promise(conn, office.config, "FA-P", date(2026, 11, 30), office.now)
        holds.dispute(conn, "FA-D", "Lieferung unvollständig", office.now)
    record_payment(db, "FA-Z", amount="50.00", paid_on="2026-11-13")
    assert [office.status(i) for i in (promised, disputed, paid, forgotten)] == ["held", "disputed", "paid", "held"]
    assert events(db, "invoice.disputed")[0].data["reason"] == "Lieferung unvollständig"

    # A week on nobody resolved FA-F: a second task; the promise waits quietly.
    office.at(datetime(2026, 11, 20, 9, tzinfo=UTC))
    escalated, = events(db, "invoice.hold_escalated")
    assert escalated.data["ref"] == "FA-F" and escalated.data["owner"] == "owner@ourco.example"
    assert tasks(db)[-1].title.startswith("Still held since 2026-11-12: invoice FA-F")
    office.at(datetime(2026, 11, 21, 9, tzinfo=UTC))
    assert len(events(db, "invoice.hold_escalated")) == 1  # once

    # The promised day passes without payment: dunning goes on by itself, at the level its age calls for.
    assert office.at(datetime(2026, 12, 1, 9, tzinfo=UTC)) == 2
    assert (office.status(promised), invoice_row(db, promised).dunning_level) == ("open", 2)
    resumed = [e.data for e in events(db, "invoice.resumed") if e.data["ref"] == "FA-P"]
    assert resumed[-1]["resolution"] == "the promised date passed without payment"


def test_invoice_show_and_the_cli_resolve_a_hold(db: Database, tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from maild.cli.business import invoice as invoice_group
    from maild.cli.context import AppContext

    office = Office(db, tmp_path)
    held = invoice(db, office.tp, "FA2611-0105", DUE)
    office.at(office.now)
    mail(db, office.tp, office.now, "FA2611-0105", "Die Rechnung ist falsch.")
    office.at(office.now + timedelta(hours=1))
    app = AppContext(str(tmp_path / "maild.yaml"), False)

    def cli(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(invoice_group, list(args), obj=app)
        return result.exit_code, result.output

    code, out = cli("show", "FA2611-0105")
    assert code == 0 and "held since 2026-11-12 11:00: mail from anna@mueller.example ('FA2611-0105') names " \
                          "invoice FA2611-0105" in out, out
    assert "who decides: owner@ourco.example; task #1; mail #1 (maild explain 1)" in out
    code, out = cli("show", "FA2611-0105", "--json")
    state = json.loads(out)["dunning"]
    assert code == 0 and state["hold"]["kind"] == "number" and state["next_step"] is None
    code, out = cli("list", "--status", "held")
    assert code == 0 and "FA2611-0105" in out, out
    code, out = cli("promise", "FA2611-0105", "--until", "2026-11-01")
    assert code == 1 and "the promised date 2026-11-01 has passed" in out
    code, out = cli("dispute", "FA2611-0105", "--reason", " ")
    assert code == 1 and "the dispute's reason (--reason) is missing" in out
    code, out = cli("resume", "FA2611-0105")
    assert code == 0 and "dunning goes on" in out
    assert office.status(held) == "open"
    code, out = cli("resume", "FA2611-0105")
    assert code == 0 and "was not held; nothing changed" in out
