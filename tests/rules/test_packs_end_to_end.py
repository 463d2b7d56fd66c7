"""The shipped rule packs, run unattended by the real daemon (`Daemon.run` with its scheduler) with the rules'
clock moved by the test: on the embedded default (SQLite, file transport, local Maildir) and against the real
servers (PostgreSQL, an SMTP server, Dovecot)."""

from __future__ import annotations

import email
import email.policy
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from maild.business.invoices import upsert_invoice
from maild.cli.setup import initialise
from maild.config import Config
from maild.daemon import Daemon
from maild.directory.service import add_contact, add_thirdparty
from maild.rules.scheduler import RulesRunner
from maild.store.db import Database
from maild.store.models import Event, Invoice, OutboxMessage, RuleLedger
from tests.conftest import Mailbox
from tests.helpers import config_at, invoke
from tests.outbound.conftest import Sink


class Clock:
    """The rules' time, moved by the test while the daemon is stopped."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def wait_for(predicate: Callable[[], bool], timeout: float = 40.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def run_daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Run the real daemon in a thread until `until()` holds, then SIGTERM-like stop. With `settle`, first let it
    finish what that state leads to: a rules sweep and an events pass that both began after `until()` held, and
    an outbox with nothing left to send (so a reminder sent twice, or one too many, would be seen)."""
    order = itertools.count()
    finished: list[tuple[str, int]] = []  # (job, when it began, in `order`) of each completed rules job
    run_job = RulesRunner.run

    def counted(runner: RulesRunner, job: str, rule: str | None = None) -> int:
        began = next(order)
        try:
            return run_job(runner, job, rule)
        finally:
            finished.append((job, began))

    monkeypatch.setattr(RulesRunner, "run", counted)

    def run(config: Config, clock: Clock, until: Callable[[], bool], settle: bool = False, what: str = "") -> None:
        daemon = Daemon(config, clock=clock)
        thread = threading.Thread(target=daemon.run, name="daemon-under-test")
        thread.start()
        try:
            wait_for(until, what=what or "the daemon")
            if settle:
                mark = next(order)
                wait_for(lambda: {"sweep", "events"} <= {job for job, began in list(finished) if began > mark}
                         and _outbox_idle(daemon.db), what=f"the rules to finish after {what}")
        finally:
            daemon.stop.set()
            thread.join(timeout=60)
        assert not thread.is_alive(), "the daemon stops cleanly"

    yield run


def _outbox_idle(db: Database) -> bool:
    ob = OutboxMessage.__table__
    with db.engine.connect() as conn:
        return conn.execute(select(ob.c.id).where(ob.c.status.in_(("queued", "sending", "retry")))).first() is None


class Home:
    """A `maild init` home whose config the test adjusts, and a view of the mail it sent."""

    def __init__(self, root: Path, database_url: str | None, sink: Sink | None) -> None:
        self.file = initialise(root, samples=False)
        self.sink = sink
        data = yaml.safe_load(self.file.read_text())
        if database_url:
            data["database"]["url"] = database_url
        data["matching"].update({"own_domains": ["nordlicht.example"]})
        data["outbound"].update({"sender": "billing@nordlicht.example", "sender_name": "Nordlicht Billing"})
        if sink is not None:
            data["outbound"]["transport"] = {"type": "smtp", "host": sink.host, "port": sink.port,
                                             "security": "plain", "timeout": 5}
        data["tracking"]["enabled"] = False
        data.setdefault("web", {})["listen_port"] = 0  # any free port: tests run side by side
        data["rules"].update({"event_interval": 0.3, "sweep_interval": 1, "lease_ttl": 6})
        data["sources"][0]["poll_interval"] = 0.5
        self.file.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        self.config = config_at(self.file)
        self.db = Database(self.config.database_url)
        self.db.upgrade()
        self.root = root

    def sent(self) -> list[EmailMessage]:
        if self.sink is not None:
            raws = [m.data for m in self.sink.handler.received]
        else:
            raws = [p.read_bytes() for p in sorted((self.root / "data" / "sent-mail").glob("**/*.eml"))]
        return [email.message_from_bytes(raw, policy=email.policy.default) for raw in raws]  # type: ignore[misc]

    def drop_mail(self, message: EmailMessage, name: str) -> None:
        (self.root / "maildir" / "new" / name).write_bytes(message.as_bytes())

    def invoice(self, ref: str) -> Any:
        with self.db.engine.connect() as conn:
            return conn.execute(select(Invoice.__table__).where(Invoice.__table__.c.ref == ref)).one()

    def ledger(self) -> list[Any]:
        with self.db.engine.connect() as conn:
            return list(conn.execute(select(RuleLedger.__table__).order_by(RuleLedger.__table__.c.id)))

    def rule_events(self) -> list[Any]:
        ev = Event.__table__
        with self.db.engine.connect() as conn:
            return list(conn.execute(select(ev).where(ev.c.type == "rule.action").order_by(ev.c.id)))


@pytest.fixture(params=["embedded", "servers"])
def home(request: pytest.FixtureRequest, tmp_path: Path) -> Home:
    if request.param == "embedded":
        return Home(tmp_path / "home", None, None)
    pg_url = request.getfixturevalue("pg_url")
    return Home(tmp_path / "home", pg_url, request.getfixturevalue("smtp_sink"))


def test_dunning_pack_sends_each_level_once_only_the_one_now_due_and_pauses_on_a_reply(
        home: Home, run_daemon: Callable[..., None]) -> None:
    db = home.db
    tp = add_thirdparty(db, name="Müller & Söhne KG", language="de")
    with db.engine.begin() as conn:
        from maild.store.models import ThirdParty
        conn.execute(ThirdParty.__table__.update().where(ThirdParty.__table__.c.id == tp)
                     .values(owner="lena@nordlicht.example"))
    buyer = add_contact(db, thirdparty_id=tp, name="Jürgen Weiß", addresses=["j.weiss@mueller.example"])
    add_contact(db, thirdparty_id=tp, name="Buchhaltung", addresses=["buchhaltung@mueller.example"],
                role="accounting")
    upsert_invoice(db, ref="FA2611-0007", thirdparty_id=tp, contact_id=buyer, issued_on=date(2026, 10, 18),
                   due_on=date(2026, 11, 1), currency="EUR",
                   lines=[{"description": "Wartungsvertrag Q4", "quantity": "1", "unit_price": "1300.00",
                           "vat_rate": "19"}])
    clock = Clock(datetime(2026, 11, 9, 9, 0, tzinfo=UTC))  # due + 8 days: level 1

    run_daemon(home.config, clock, lambda: len(home.sent()) >= 1, settle=True, what="the level-1 reminder")
    first = home.sent()
    assert len(first) == 1
    assert first[0]["To"].addresses[0].addr_spec == "j.weiss@mueller.example"
    assert "FA2611-0007" in first[0]["Subject"]
    assert not [p for p in first[0].walk() if p.get_filename()], "level 1 carries no PDF"
    assert "1.547,00" in first[0].get_body(("plain",)).get_content(), "the amount due, formatted in German"
    assert home.invoice("FA2611-0007").dunning_level == 1

    clock.now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)  # down for three weeks: due + 31 days, level 2 only
    run_daemon(home.config, clock, lambda: len(home.sent()) >= 2, settle=True, what="the level-2 reminder")
    sent = home.sent()
    assert len(sent) == 2, "only the level now due, not every missed one"
    assert [p.get_filename() for p in sent[1].walk() if p.get_filename()] == ["Mahnung-2-FA2611-0007.pdf"]
    assert home.invoice("FA2611-0007").dunning_level == 2

    reply = EmailMessage()
    reply["From"] = "Jürgen Weiß <j.weiss@mueller.example>"
    reply["To"] = "billing@nordlicht.example"
    reply["Subject"] = "Re: FA2611-0007"
    reply["Date"] = "Thu, 03 Dec 2026 10:00:00 +0000"
    reply["Message-ID"] = "<reply-1@mueller.example>"
    reply["In-Reply-To"] = sent[1]["Message-ID"]
    reply.set_content("Wir prüfen das und melden uns.")
    home.drop_mail(reply, "reply.eml")
    clock.now = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)  # due + 37: level 3 would be due, but they replied

    def replied_and_swept() -> bool:
        ev = Event.__table__
        with db.engine.connect() as conn:
            return conn.execute(select(ev.c.id).where(ev.c.type == "mail.matched")).first() is not None
    run_daemon(home.config, clock, replied_and_swept, settle=True, what="the reply to be matched")
    assert len(home.sent()) == 2, "a reply pauses dunning"
    assert home.invoice("FA2611-0007").dunning_level == 2

    ledger = [row for row in home.ledger() if row.status == "done"]
    assert sorted({row.rule for row in ledger}) == ["dunning-level-1", "dunning-level-2"]
    assert len({row.key for row in ledger}) == len(ledger)
    events = home.rule_events()
    assert sorted(e.data["key"] for e in events) == sorted(row.key for row in ledger), \
        "every action once on the timeline"
    assert all(e.data["reason"] and e.thirdparty_id == tp for e in events)
    log = invoke(home.file, "rules", "log").stdout
    assert "dunning-level-1" in log and "dunning-level-2" in log


def test_shared_inbox_and_meeting_followup_packs_against_the_real_servers(
        tmp_path: Path, pg_url: str, smtp_sink: Sink, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch,
        run_daemon: Callable[..., None]) -> None:
    from tests.business.invites import ics, invitation_mail

    monkeypatch.setenv("MAILD_TEST_IMAP_PASSWORD", mailbox.password)
    home = Home(tmp_path / "home", pg_url, smtp_sink)
    data = yaml.safe_load(home.file.read_text())
    data["sources"] = [mailbox.source(name="shared")]
    data["filing"]["action"] = "move"  # the shared inbox sorts itself (filing off, the default, moves nothing)
    home.file.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    home.config = config_at(home.file)
    db = home.db
    tp = add_thirdparty(db, name="Müller & Söhne KG", language="de")
    with db.engine.begin() as conn:
        from maild.store.models import ThirdParty
        conn.execute(ThirdParty.__table__.update().where(ThirdParty.__table__.c.id == tp)
                     .values(owner="lena@nordlicht.example"))
    add_contact(db, thirdparty_id=tp, name="Jürgen Weiß", addresses=["j.weiss@mueller-soehne.example"])

    # An Outlook-style invitation (the calendar inline, no .ics file) from the customer, and a stranger's mail.
    calendar = ics(attendees=("CN=Lena Hoffmann;PARTSTAT=ACCEPTED:mailto:lena@nordlicht.example",
                              "CN=Jürgen Weiß;PARTSTAT=ACCEPTED:mailto:j.weiss@mueller-soehne.example"))
    stranger = EmailMessage()
    stranger["From"] = "someone@unknown-company.example"
    stranger["To"] = "info@nordlicht.example"
    stranger["Subject"] = "Question"
    stranger["Message-ID"] = "<q-1@unknown-company.example>"
    stranger.set_content("Do you sell spare parts?")
    # sent days before the meeting: the invitation is no contact *after* it
    invitation = invitation_mail(calendar, attach_file=False, date="Mon, 16 Nov 2026 08:00:00 +0000")
    mailbox.append([invitation, stranger.as_bytes()])
    clock = Clock(datetime(2026, 11, 19, 12, 0, tzinfo=UTC))  # the meeting is 14:00-15:30 Berlin (13:00-14:30 UTC)

    def sorted_and_told() -> bool:
        if mailbox.uids("INBOX")[1] or len(home.sent()) < 1:
            return False
        clock.now = datetime(2026, 11, 19, 17, 0, tzinfo=UTC)  # the meeting ended 2.5 hours ago
        return len(home.sent()) >= 2

    run_daemon(home.config, clock, sorted_and_told, settle=True, what="filing, the owner's notice and the follow-up")
    with mailbox.server.client(mailbox.user, mailbox.password) as imap:
        folders = [name for _flags, _delim, name in imap.list_folders()]
    customer = next(f for f in folders if f.startswith("Customers") and "Müller" in f)
    assert len(mailbox.uids(customer)[1]) == 1 and len(mailbox.uids("Triage")[1]) == 1
    assert mailbox.uids("INBOX")[1] == []

    sent = home.sent()
    assert len(sent) == 2, [m["Subject"] for m in sent]
    notice, followup = sent
    assert notice["To"].addresses[0].addr_spec == "lena@nordlicht.example"
    assert "is being filed into its folder on the mail server" in notice.get_body(("plain",)).get_content()
    assert followup["To"].addresses[0].addr_spec == "j.weiss@mueller-soehne.example", "external attendees only"
    assert "Rollout der Version 4.2" in followup["Subject"]
    ev = Event.__table__
    with db.engine.connect() as conn:
        types = conn.execute(select(ev.c.type).where(ev.c.thirdparty_id == tp).order_by(ev.c.id)).scalars().all()
    assert "meeting.created" in types and types.count("mail.sent") == 1  # the follow-up (the notice is internal)


def test_shared_inbox_pack_with_filing_off_leaves_the_mail_where_it_is(
        tmp_path: Path, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch, run_daemon: Callable[..., None]) -> None:
    """A default install (`filing.action: none`) with an IMAP account and the shipped shared-inbox pack: its
    `move: true` rules file nothing (off means off), and say so in the ledger; INBOX and Archive stay as they are."""
    from maild.store.models import FilingTask

    monkeypatch.setenv("MAILD_TEST_IMAP_PASSWORD", mailbox.password)
    home = Home(tmp_path / "home", None, None)
    data = yaml.safe_load(home.file.read_text())
    assert data["filing"]["action"] == "none", "the default install files nothing"
    data["sources"] = [mailbox.source(name="shared", folders=["INBOX", "Archive"])]
    home.file.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    home.config = config_at(home.file)
    db = home.db
    tp = add_thirdparty(db, name="Müller & Söhne KG", language="de")
    add_contact(db, thirdparty_id=tp, name="Jürgen Weiß", addresses=["j.weiss@mueller-soehne.example"])
    mails = []
    for sender, subject in (("j.weiss@mueller-soehne.example", "Angebot"), ("someone@unknown.example", "Hi")):
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = sender, "info@nordlicht.example", subject
        mail["Message-ID"] = f"<{subject.lower()}@example.test>"
        mail.set_content("Hello")
        mails.append(mail.as_bytes())
    mailbox.append([mails[0]], "INBOX")
    mailbox.append([mails[1]], "Archive")
    moves = ("file-matched-mail", "triage-unmatched-mail")
    ft = FilingTask.__table__

    def both_rules_acted_and_nothing_left_to_file() -> bool:
        rows = [r for r in home.ledger() if r.rule in moves]
        with db.engine.connect() as conn:
            unfinished = conn.execute(select(ft.c.id).where(ft.c.status == "pending")).first()
        return len(rows) == 2 and all(r.status != "running" for r in rows) and unfinished is None

    run_daemon(home.config, Clock(datetime.now(UTC)), both_rules_acted_and_nothing_left_to_file,
               what="the shared-inbox rules on both mails")
    assert len(mailbox.uids("INBOX")[1]) == 1 and len(mailbox.uids("Archive")[1]) == 1
    with mailbox.server.client(mailbox.user, mailbox.password) as imap:
        folders = [name for _flags, _delim, name in imap.list_folders()]
    assert not [f for f in folders if f.startswith(("Customers", "Triage"))], folders
    rows = {r.rule: r for r in home.ledger() if r.rule in moves}
    assert {r.status for r in rows.values()} == {"skipped"}
    assert "filing is off for account shared (filing.action: none)" in rows["triage-unmatched-mail"].detail["skipped"]
    log = invoke(home.file, "rules", "log", "--rule", "triage-unmatched-mail").stdout
    assert "nothing to do: filing is off for account shared" in log


def _servers_home(tmp_path: Path, pg_url: str, smtp_sink: Sink, mailbox: Mailbox,
                  monkeypatch: pytest.MonkeyPatch, **matching: Any) -> tuple[Home, int]:
    """A home on PostgreSQL, the SMTP sink and the Dovecot mailbox, with the customer Müller & Söhne (owner
    lena@nordlicht.example, contact j.weiss@mueller-soehne.example)."""
    monkeypatch.setenv("MAILD_TEST_IMAP_PASSWORD", mailbox.password)
    home = Home(tmp_path / "home", pg_url, smtp_sink)
    data = yaml.safe_load(home.file.read_text())
    data["sources"] = [mailbox.source(name="shared")]
    data["filing"]["action"] = "move"  # the shared inbox sorts itself
    data["matching"].update(matching)
    home.file.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    home.config = config_at(home.file)
    db = home.db
    tp = add_thirdparty(db, name="Müller & Söhne KG", language="de")
    with db.engine.begin() as conn:
        from maild.store.models import ThirdParty
        conn.execute(ThirdParty.__table__.update().where(ThirdParty.__table__.c.id == tp)
                     .values(owner="lena@nordlicht.example"))
    add_contact(db, thirdparty_id=tp, name="Jürgen Weiß", addresses=["j.weiss@mueller-soehne.example"])
    return home, tp


def test_an_outsiders_invitations_make_maild_mail_nobody_and_change_no_meeting(
        tmp_path: Path, pg_url: str, smtp_sink: Sink, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch,
        run_daemon: Callable[..., None]) -> None:
    """Issue 11, item 2: the open relay through calendar invitations, against Dovecot, PostgreSQL and SMTP."""
    from tests.business.invites import ics, invitation_mail

    home, _tp = _servers_home(tmp_path, pg_url, smtp_sink, mailbox, monkeypatch)
    legit_uid = "040000008200E00074C5B7101A82E008@example.com"
    victims = tuple(f"CN=Victim {n}:mailto:victim{n}@victims.example" for n in range(30))
    mallory = "CN=Mallory:mailto:mallory@evil.example"
    # The customer's real invitation: Lena (ours), Jürgen (a contact) and a guest nobody knows.
    legit = invitation_mail(ics(uid=legit_uid), attach_file=False, date="Mon, 16 Nov 2026 08:00:00 +0000")
    # An outsider: a meeting of their own with 30 strangers and our customer's contact as attendees ...
    spam = invitation_mail(ics(uid="spam-1@evil.example", summary="Cheap pills at evil.example", organizer=mallory,
                               attendees=(*victims, "CN=Jürgen:mailto:j.weiss@mueller-soehne.example")),
                           sender="mallory@evil.example", subject="Meeting")
    # ... an "update" of the customer's meeting (its UID is in every copy of the invitation) ...
    hijack = invitation_mail(ics(uid=legit_uid, sequence=7, summary="Moved: see evil.example", organizer=mallory,
                                 attendees=victims), sender="mallory@evil.example", subject="Update")
    # ... and its cancellation.
    cancel = invitation_mail(ics(method="CANCEL", uid=legit_uid, sequence=8, organizer=mallory), method="CANCEL",
                             sender="mallory@evil.example", subject="Cancelled")
    mailbox.append([legit, spam, hijack, cancel])
    clock = Clock(datetime(2026, 11, 19, 12, 0, tzinfo=UTC))  # the meeting is 13:00-14:30 UTC

    def followed_up() -> bool:
        if mailbox.uids("INBOX")[1] or len(home.sent()) < 1:
            return False
        clock.now = datetime(2026, 11, 19, 17, 0, tzinfo=UTC)  # every meeting of these mails ended 2.5 hours ago
        return len(home.sent()) >= 2

    run_daemon(home.config, clock, followed_up, settle=True, what="the owner's notice and the follow-up")
    recipients = sorted({r.lower() for m in smtp_sink.handler.received for r in m.recipients})
    assert recipients == ["j.weiss@mueller-soehne.example", "lena@nordlicht.example"], recipients
    subjects = [m["Subject"] for m in home.sent()]
    assert len(subjects) == 2 and not any("evil" in s for s in subjects), subjects

    from maild.business.meetings import list_meetings
    [meeting] = list_meetings(home.db)
    assert meeting["uid"] == legit_uid and meeting["status"] == "confirmed"
    assert meeting["subject"] == "Rollout der Version 4.2" and meeting["sequence"] == 0
    assert meeting["organizer"] == "j.weiss@mueller-soehne.example"
    guest = next(a for a in meeting["attendees"] if a["address"] == "guest@elsewhere.example")
    assert guest["thirdparty_id"] is None, "the unknown guest is recorded, and was not mailed"
    ev = Event.__table__
    with home.db.engine.connect() as conn:
        refused = conn.execute(select(ev).where(ev.c.type == "meeting.refused").order_by(ev.c.id)).all()
    assert len(refused) == 3, "each refused invitation is reported"
    assert all(r.data["sender"] == "mallory@evil.example" for r in refused)


def _received_by_us(raw: bytes, results: str) -> bytes:
    """The mail as our receiving server hands it on: its Authentication-Results and Received on top."""
    return (f"Authentication-Results: mx.nordlicht.example;\n\t{results}\n"
            "Received: from sender.example by mx.nordlicht.example with ESMTPS; Fri, 20 Nov 2026 10:00:00 +0000\n"
            ).encode() + raw


def test_a_forged_sender_is_filed_unauthenticated_and_holds_or_triggers_no_automation(
        tmp_path: Path, pg_url: str, smtp_sink: Sink, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch,
        run_daemon: Callable[..., None]) -> None:
    """Issue 11, item 16: `dmarc=fail` from our own server: filed to the customer, marked on the timeline and in
    `maild explain`, but it pauses no dunning, notifies nobody and makes no meeting. Dovecot, PostgreSQL, SMTP."""
    from tests.business.invites import ics, invitation_mail

    home, tp = _servers_home(tmp_path, pg_url, smtp_sink, mailbox, monkeypatch,
                             trusted_authserv_ids=["mx.nordlicht.example"])
    db = home.db
    upsert_invoice(db, ref="FA2611-0007", thirdparty_id=tp, issued_on=date(2026, 10, 18),
                   due_on=date(2026, 11, 1), currency="EUR",
                   lines=[{"description": "Wartung", "quantity": "1", "unit_price": "1300.00", "vat_rate": "19"}])
    other = add_thirdparty(db, name="Nordwind GmbH")
    with db.engine.begin() as conn:
        from maild.store.models import ThirdParty
        conn.execute(ThirdParty.__table__.update().where(ThirdParty.__table__.c.id == other)
                     .values(owner="lena@nordlicht.example"))
    add_contact(db, thirdparty_id=other, name="Kai Berg", addresses=["k.berg@nordwind.example"])

    def mail(sender: str, subject: str, text: str) -> bytes:
        message = EmailMessage()
        message["From"] = sender
        message["To"] = "billing@nordlicht.example"
        message["Subject"] = subject
        message["Date"] = "Fri, 20 Nov 2026 10:00:00 +0000"
        message["Message-ID"] = f"<{abs(hash(subject))}@sender.example>"
        message.set_content(text)
        return message.as_bytes()

    fail = "spf=fail smtp.mailfrom=evil.example; dkim=none; dmarc=fail (p=reject) header.from=mueller-soehne.example"
    forged_reply = _received_by_us(mail("Jürgen Weiß <j.weiss@mueller-soehne.example>", "Zahlung FA2611-0007",
                                        "Bitte zahlen Sie ab jetzt auf unser neues Konto."), fail)
    forged_invite = _received_by_us(invitation_mail(ics(uid="forged@evil.example"), attach_file=False), fail)
    genuine = _received_by_us(mail("k.berg@nordwind.example", "Angebot", "Können Sie uns ein Angebot machen?"),
                              "spf=pass smtp.mailfrom=nordwind.example; dmarc=pass header.from=nordwind.example")
    mailbox.append([forged_reply, forged_invite, genuine])
    clock = Clock(datetime(2026, 11, 25, 9, 0, tzinfo=UTC))  # due + 24 days: level 2 is due

    run_daemon(home.config, clock, lambda: not mailbox.uids("INBOX")[1] and len(home.sent()) >= 2, settle=True,
               what="filing, the level-2 reminder and the owner's notice")
    sent = sorted((m["To"].addresses[0].addr_spec, m["Subject"]) for m in home.sent())
    assert len(sent) == 2, sent
    assert sent[0][0] == "j.weiss@mueller-soehne.example" and "FA2611-0007" in sent[0][1], \
        "the reminder goes out despite the forged reply"
    assert sent[1] == ("lena@nordlicht.example", "New conversation with Nordwind GmbH: Angebot"), \
        "only the genuine mail tells the owner"
    assert home.invoice("FA2611-0007").dunning_level == 2
    with mailbox.server.client(mailbox.user, mailbox.password) as imap:
        folders = [name for _flags, _delim, name in imap.list_folders()]
    customer = next(f for f in folders if f.startswith("Customers") and "Müller" in f)
    assert len(mailbox.uids(customer)[1]) == 2, "forged mail is still filed to the customer it claims to be from"

    from maild.business.meetings import list_meetings
    assert list_meetings(db) == [], "a forged invitation makes no meeting"
    timeline = invoke(home.file, "timeline", str(tp)).stdout
    assert timeline.count("UNAUTHENTICATED") == 2, timeline
    assert "dmarc=fail" in timeline
    with db.engine.connect() as conn:
        from maild.store.models import Message
        ids = dict(conn.execute(select(Message.__table__.c.subject, Message.__table__.c.id)).all())
    explained = invoke(home.file, "explain", str(ids["Zahlung FA2611-0007"])).stdout
    assert "UNAUTHENTICATED: mx.nordlicht.example: spf=fail" in explained
    assert "no rule acts on it beyond filing" in explained
    explained = invoke(home.file, "explain", str(ids["Einladung: Rollout"])).stdout
    assert "refused: the mail failed authentication" in explained
    assert "OK" in invoke(home.file, "config", "check").stdout
