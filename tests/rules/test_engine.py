"""The rules engine on real SQLite and PostgreSQL, with a clock the tests move (no sleeping for rule timing)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select, update

from maild.rules.engine import RulesEngine
from maild.rules.model import NoteAction, RuleSet, TagAction
from maild.store.db import Database
from maild.store.models import Event, Invoice, OutboxMessage, RuleCursor, RuleLedger, Task
from tests.conftest import PG_ADMIN
from tests.rules.test_engine_support import (
    FakeClock,
    add_event,
    at,
    count,
    customer,
    events,
    inbound_mail,
    invoice,
    invoice_row,
    ledger_rows,
    make_config,
    on_event,
    on_sweep,
    outbox_rows,
    rule,
    rules,
    send,
    set_,
    stop,
    task,
    text,
)

D = timedelta(days=1)
DUE = date(2026, 11, 3)


def note_rule(name: str = "note-new-mail", types: tuple[str, ...] = ("mail.matched",)) -> RuleSet:
    return rules(rule(name, on_event(*types), [
        ("note", NoteAction(text("mail {{ event.data.subject }} ({{ event.type }})"))),
        ("tag", TagAction(add=("active",)))]))


def test_event_rule_fires_once_per_event_across_engines_and_restart(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    clock = FakeClock(datetime(2026, 11, 26, 9, tzinfo=UTC))
    tp, _ = customer(db)
    # Recorded before any engine ran (say by `maild ingest --once`), after the schema was created: still seen.
    old = add_event(db, "mail.matched", tp, subject="before the first start")
    first = RulesEngine(config, db, note_rule(), clock=clock)
    second = RulesEngine(config, db, note_rule(), clock=clock)
    add_event(db, "mail.matched", tp, subject="hello", matcher="address")
    add_event(db, "mail.unmatched", None, subject="spam")
    assert first.process_events() == 4  # note + tag, twice
    assert second.process_events() == 0  # the cursor moved on
    # An engine that read before the cursor moved (cursor put back) finds every key in the ledger.
    with db.engine.begin() as conn:
        conn.execute(update(RuleCursor.__table__).values(last_event_id=old))
    assert second.process_events() == 0
    restarted = RulesEngine(config, db, note_rule(), clock=clock)
    assert restarted.process_events() == 0
    add_event(db, "mail.matched", tp, subject="again", matcher="thread")
    assert restarted.process_events() == 2
    assert first.process_events() == 0
    notes = events(db, "note.added")
    assert [n.data["text"] for n in notes] == ["mail before the first start (mail.matched)",
                                               "mail hello (mail.matched)", "mail again (mail.matched)"]
    actions = events(db, "rule.action")
    assert len(actions) == 6 and len({a.data["key"] for a in actions}) == 6
    assert all(row.status == "done" for row in ledger_rows(db))
    assert actions[0].data["reason"].startswith("event mail.matched #")
    assert actions[0].data["action"] == "note" and actions[0].thirdparty_id == tp


def test_mail_replied_is_a_thread_matched_mail(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    engine = RulesEngine(config, db, note_rule("on-reply", ("mail.replied",)),
                         clock=FakeClock(datetime(2026, 11, 26, 9, tzinfo=UTC)))
    tp, _ = customer(db)
    add_event(db, "mail.matched", tp, subject="by address", matcher="address")
    add_event(db, "mail.matched", tp, subject="an answer", matcher="thread")
    assert engine.process_events() == 2
    assert [n.data["text"] for n in events(db, "note.added")] == ["mail an answer (mail.replied)"]
    assert "mail.matched by the thread matcher" in ledger_rows(db)[0].reason


def test_sweep_fires_on_or_after_its_date_exactly_once(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    clock = FakeClock(datetime(2026, 11, 9, 22, 30, tzinfo=UTC))  # 23:30 in Berlin on due + 6
    tp, _ = customer(db)
    inv = invoice(db, tp, "FA-1", DUE)
    ruleset = rules(rule("level-1", on_sweep("invoice", "due_on", 7 * D, 21 * D), [
        send(), set_(invoice__dunning_level="1", invoice__last_dunned_at="now")],
        conditions=('invoice.status == "open"', "invoice.dunning_level < 1")))
    engine = RulesEngine(config, db, ruleset, clock=clock)
    assert engine.sweep() == 0
    clock.set(datetime(2026, 11, 9, 23, 10, tzinfo=UTC))  # 00:10 in Berlin on due + 7: calendar days there
    assert engine.sweep() == 2
    assert engine.sweep() == 0
    clock.advance(days=3)
    assert RulesEngine(config, db, ruleset, clock=clock).sweep() == 0
    mails = outbox_rows(db)
    assert [m.idempotency_key for m in mails] == [f"level-1:invoice:{inv}:0"]
    assert mails[0].recipients == ["anna@müller.example"] or mails[0].recipients[0].startswith("anna@")
    row = invoice_row(db, inv)
    assert row.dunning_level == 1 and row.last_dunned_at is not None
    reasons = {r.reason for r in ledger_rows(db)}
    assert reasons == {'sweep invoice FA-1 due_on+7d..+21d (2026-11-10 <= now); invoice.status == "open"; '
                       'invoice.dunning_level < 1'}


def dunning_ladder() -> RuleSet:
    """The ladder of issue 5: reminder at -3d, level 1 at +7d..+21d, level 2 at +21d..+35d (with the PDF),
    level 3 at +35d (accounting contact, a task for the owner), repeated every 14 days at most 3 times; no level
    when the invoice is not open or the customer wrote since the last level."""
    quiet = "not replied_since(invoice.last_dunned_at or invoice.due_on)"
    return rules(
        rule("reminder", on_sweep("invoice", "due_on", -3 * D, 0 * D), [send()],
             conditions=('invoice.status == "open"', "invoice.dunning_level == 0", "amount_due() > 0")),
        rule("level-1", on_sweep("invoice", "due_on", 7 * D, 21 * D), [
            send(), set_(invoice__dunning_level="1", invoice__last_dunned_at="now")],
            conditions=('invoice.status == "open"', "invoice.dunning_level < 1", quiet)),
        rule("level-2", on_sweep("invoice", "due_on", 21 * D, 35 * D), [
            send(attach=("invoice_pdf",)), set_(invoice__dunning_level="2", invoice__last_dunned_at="now",
                                                invoice__late_fees="invoice.late_fees + 5")],
            conditions=('invoice.status == "open"', "invoice.dunning_level < 2", quiet)),
        rule("level-3", on_sweep("invoice", "due_on", 35 * D), [
            send(to='contact_with_role("accounting") or contact', attach=("invoice_pdf",)),
            task("Call {{ thirdparty.name }} about {{ invoice.ref }}", due=3 * D),
            set_(invoice__dunning_level="3", invoice__last_dunned_at="now")],
            conditions=('invoice.status == "open"', "invoice.dunning_level < 3", quiet)),
        rule("level-3-repeat", on_sweep("invoice", "last_dunned_at", 14 * D), [
            send(to='contact_with_role("accounting") or contact'),
            set_(invoice__dunning_repeats="invoice.dunning_repeats + 1", invoice__last_dunned_at="now")],
            conditions=('invoice.status == "open"', "invoice.dunning_level == 3 and invoice.dunning_repeats < 3",
                        "not replied_since(invoice.last_dunned_at)"),
            once_per="invoice.dunning_repeats"),
    )


def sent_levels(db: Database) -> list[str]:
    return [m.idempotency_key.split(":invoice:")[0] for m in outbox_rows(db)]


def test_dunning_after_ten_days_down_sends_only_the_level_now_due(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    inv = invoice(db, tp, "FA-7", DUE)
    clock = FakeClock(at(DUE - 2 * D))
    engine = RulesEngine(config, db, dunning_ladder(), clock=clock)
    engine.sweep()
    assert sent_levels(db) == ["reminder"]
    clock.set(at(DUE + 12 * D))  # level 1 due since +7
    engine.sweep()
    assert sent_levels(db) == ["reminder", "level-1"]
    clock.set(at(DUE + 22 * D))  # down for ten days
    restarted = RulesEngine(config, db, dunning_ladder(), clock=clock)
    restarted.sweep()
    restarted.sweep()
    assert sent_levels(db) == ["reminder", "level-1", "level-2"]
    # Down from +22 to +46: level 3 is due now, nothing in between is sent late.
    clock.set(at(DUE + 46 * D))
    restarted.sweep()
    assert sent_levels(db) == ["reminder", "level-1", "level-2", "level-3"]
    with db.engine.connect() as conn:
        tasks = list(conn.execute(select(Task.__table__)))
    assert len(tasks) == 1 and tasks[0].owner == "owner@ourco.example" and tasks[0].rule == "level-3"
    # The repeats: 14 days after each, at most three, even when the daemon sleeps through some of them.
    for days in (50, 59, 60, 61, 75, 76, 90, 120, 200):
        clock.set(at(DUE + days * D))
        restarted.sweep()
    assert sent_levels(db) == ["reminder", "level-1", "level-2", "level-3"] + ["level-3-repeat"] * 3
    keys = [m.idempotency_key for m in outbox_rows(db)]
    assert len(set(keys)) == len(keys)
    assert keys[-3:] == [f"level-3-repeat:invoice:{inv}:0:{n}" for n in range(3)]
    row = invoice_row(db, inv)
    assert (row.dunning_level, row.dunning_repeats, str(row.late_fees)) == (3, 3, "5.00")
    assert len(events(db, "rule.action")) == len(ledger_rows(db, status="done"))


def test_daily_dunning_sends_every_level_once(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    invoice(db, tp, "FA-8", DUE)
    clock = FakeClock(at(DUE - 5 * D))
    engine = RulesEngine(config, db, dunning_ladder(), clock=clock)
    for _ in range(110):
        engine.sweep()
        clock.advance(hours=12)
        engine.sweep()
        clock.advance(hours=12)
    assert sent_levels(db) == ["reminder", "level-1", "level-2", "level-3"] + ["level-3-repeat"] * 3


@pytest.mark.parametrize("status", ["paid", "disputed", "paused"])
def test_dunning_stops_when_the_invoice_is_not_open(db: Database, tmp_path: Path, status: str) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    inv = invoice(db, tp, "FA-9", DUE)
    clock = FakeClock(at(DUE + 8 * D))
    engine = RulesEngine(config, db, dunning_ladder(), clock=clock)
    engine.sweep()
    assert sent_levels(db) == ["level-1"]
    with db.engine.begin() as conn:
        conn.execute(update(Invoice.__table__).where(Invoice.__table__.c.id == inv).values(status=status))
    for days in (22, 36, 50, 64):
        clock.set(at(DUE + days * D))
        engine.sweep()
    assert sent_levels(db) == ["level-1"]


def test_a_reply_since_the_last_level_pauses_dunning(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    other, _ = customer(db, "Schmidt AG")
    paused = invoice(db, tp, "FA-10", DUE)
    invoice(db, other, "FA-11", DUE)
    clock = FakeClock(at(DUE + 8 * D))
    engine = RulesEngine(config, db, dunning_ladder(), clock=clock)
    engine.sweep()
    assert sent_levels(db) == ["level-1", "level-1"]
    last = invoice_row(db, paused).last_dunned_at
    inbound_mail(db, other, "anna@schmidt.example", clock.now - 3 * D)  # before the level: no pause
    inbound_mail(db, tp, "billing@ourco.example", clock.now + 2 * D)  # our own mail is no reply
    clock.set(at(DUE + 22 * D))
    engine.sweep()
    assert sent_levels(db) == ["level-1", "level-1", "level-2", "level-2"]
    inbound_mail(db, tp, "anna@mueller.example", clock.now + 1 * D)  # the customer answers after level 2
    clock.set(at(DUE + 36 * D))
    engine.sweep()
    levels = [(m.thirdparty_id, m.idempotency_key.split(":")[0]) for m in outbox_rows(db)]
    assert (other, "level-3") in levels and (tp, "level-3") not in levels
    assert last is not None


def test_stop_action_ends_later_rules_for_the_subject(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    vip, _ = customer(db, "Vip GmbH", tags=("vip",))
    normal, _ = customer(db, "Normal KG")
    invoice(db, vip, "FA-20", DUE)
    invoice(db, normal, "FA-21", DUE)
    ruleset = rules(
        rule("vip-guard", on_sweep("invoice", "due_on", 0 * D), [stop()], conditions=('has_tag("vip")',)),
        rule("level-1", on_sweep("invoice", "due_on", 7 * D), [send()]))
    clock = FakeClock(at(DUE + 8 * D))
    engine = RulesEngine(config, db, ruleset, clock=clock)
    engine.sweep()
    engine.sweep()  # the stop is in the ledger once, and still stops
    assert [m.thirdparty_id for m in outbox_rows(db)] == [normal]
    stops = ledger_rows(db, rule="vip-guard")
    assert len(stops) == 1 and stops[0].action == "stop" and stops[0].status == "done"
    assert len(events(db, "rule.action")) == 2


def test_an_expression_error_fails_one_subject_and_the_others_go_on(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    bad = invoice(db, tp, "FA-30", DUE)
    good = invoice(db, tp, "FA-31", DUE)
    ruleset = rules(rule("level-1", on_sweep("invoice", "due_on", 7 * D), [send()],
                         conditions=("days_since(invoice.last_dunned_at) > 3 if invoice.ref == 'FA-30' else true",)))
    engine = RulesEngine(config, db, ruleset, clock=FakeClock(at(DUE + 8 * D)))
    engine.sweep()
    engine.sweep()
    assert [m.idempotency_key for m in outbox_rows(db)] == [f"level-1:invoice:{good}:0"]
    failed = ledger_rows(db, status="failed")
    assert len(failed) == 1 and failed[0].subject == f"invoice:{bad}" and "days_since" in failed[0].detail["error"]


def test_simulate_writes_nothing_and_shows_what_is_done(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    invoice(db, tp, "FA-40", DUE)
    done = invoice(db, tp, "FA-41", DUE)
    clock = FakeClock(at(DUE + 8 * D))
    ruleset = RuleSet(rules=(*dunning_ladder().rules, *note_rule().rules), timezone="Europe/Berlin")
    real = RulesEngine(config, db, ruleset, clock=clock)
    with db.engine.begin() as conn:  # FA-41 was dunned before (its level-1 send is in the ledger)
        conn.execute(RuleLedger.__table__.insert().values(
            key=f"level-1:invoice:{done}:0", rule="level-1", subject=f"invoice:{done}", action="send", step=0,
            status="done", detail={}, created_at=clock.now))
    add_event(db, "mail.matched", tp, when=clock.now - 2 * D, subject="old news")
    tables = (OutboxMessage.__table__, RuleLedger.__table__, Event.__table__, RuleCursor.__table__)
    before = [count(db, t) for t in tables]
    cursor = real.cursor.position()
    planned = RulesEngine(config, db, ruleset, clock=clock, simulate=True).simulate(clock.now - 30 * D)
    assert [count(db, t) for t in tables] == before and real.cursor.position() == cursor
    by_key = {p.key: p for p in planned}
    assert by_key[f"level-1:invoice:{done}:0"].status == "already done"
    assert {p.action for p in planned} >= {"send", "set", "note", "tag"}
    sends = [p for p in planned if p.action == "send" and p.status == "planned"]
    assert len(sends) == 1 and sends[0].summary.startswith("send reminder to anna@")
    assert "due_on+7d..+21d" in sends[0].reason
    assert any(p.summary.startswith("note ") and p.subject.startswith("event:") for p in planned)


# An event inserted by hand on a connection of its own (its transaction left open as a test needs).
PG_INSERT = ("INSERT INTO events (type, occurred_at, recorded_at, thirdparty_id, data) "
             "VALUES ('mail.matched', now(), now(), %s, %s) RETURNING id")


@pytest.fixture
def other_database_busy(pg_url: str) -> Iterator[None]:
    """Another application's database on the same server, with a writing transaction left open throughout (a
    shared server is always busy somewhere): maild's rules must not wait for it."""
    name = f"maild_other_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}") as other:
            other.execute("CREATE TABLE work (n int)")
            other.execute("INSERT INTO work VALUES (1)")  # holds a transaction id until the test ends
            yield
            other.rollback()
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_engine(pg_url: str, tmp_path: Path) -> tuple[Database, RulesEngine, FakeClock, int]:
    """A migrated PostgreSQL database, an engine with the note rule on it, its clock, a customer."""
    db = Database(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    db.upgrade()
    clock = FakeClock(datetime(2026, 11, 26, 9, tzinfo=UTC))
    engine = RulesEngine(make_config(tmp_path, db), db, note_rule(), clock=clock)
    tp, _ = customer(db)
    return db, engine, clock, tp


def test_postgresql_event_committed_late_with_a_lower_id_is_not_skipped(pg_url: str, tmp_path: Path,
                                                                       other_database_busy: None) -> None:
    db, engine, clock, tp = _pg_engine(pg_url, tmp_path)
    insert = PG_INSERT
    try:
        with psycopg.connect(pg_url) as slow, psycopg.connect(pg_url) as fast:
            low = slow.execute(insert, (tp, '{"subject": "slow"}')).fetchone()[0]  # type: ignore[index]
            high = fast.execute(insert, (tp, '{"subject": "fast"}')).fetchone()[0]  # type: ignore[index]
            fast.commit()
            assert low < high
            assert engine.process_events() == 0  # holds at the gap: `low` is not committed yet
            clock.advance(seconds=30)
            assert engine.process_events() == 0  # still in progress, however long
            slow.commit()
        assert engine.process_events() == 4
        assert sorted(n.data["text"] for n in events(db, "note.added")) == ["mail fast (mail.matched)",
                                                                           "mail slow (mail.matched)"]
        # A rolled-back id is a permanent gap: passed once its transaction is over (and the gap a moment old).
        with psycopg.connect(pg_url) as aborted:
            aborted.execute(insert, (tp, '{"subject": "never"}'))
            aborted.rollback()
        add_event(db, "mail.matched", tp, subject="after the gap")
        assert engine.process_events() == 0
        clock.advance(seconds=3)
        assert engine.process_events() == 2
        assert engine.cursor.position() == events(db, "mail.matched")[-1].id
    finally:
        db.dispose()


def test_db_only_steps_commit_together_and_a_failing_one_leaves_the_earlier_done(db: Database,
                                                                                  tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    first = invoice(db, tp, "FA-50", DUE)
    ruleset = rules(rule("level-1", on_sweep("invoice", "due_on", 7 * D), [
        set_(invoice__dunning_level="1"), task("call about {{ invoice.ref }}"),
        set_(invoice__status='"lost"')]))  # not a status: fails when applied
    clock = FakeClock(at(DUE + 8 * D))
    engine = RulesEngine(config, db, ruleset, clock=clock)
    assert engine.sweep() == 2
    assert engine.sweep() == 0  # the failed step blocks; nothing is done twice
    rows = {row.step: row.status for row in ledger_rows(db)}
    assert rows == {0: "done", 1: "done", 2: "failed"}
    assert invoice_row(db, first).dunning_level == 1
    with db.engine.connect() as conn:
        assert [t.title for t in conn.execute(select(Task.__table__))] == ["call about FA-50"]
    assert [e.data["key"] for e in events(db, "rule.action")] == [f"level-1:invoice:{first}:0",
                                                                  f"level-1:invoice:{first}:1"]
    # without a failing step, the steps of a subject go in one transaction, each with its ledger row and event
    second = invoice(db, tp, "FA-51", DUE)
    ok = rules(rule("level-1b", on_sweep("invoice", "due_on", 7 * D), [
        set_(invoice__dunning_level="2"), task("call about {{ invoice.ref }}")]))
    assert RulesEngine(config, db, ok, clock=clock).sweep() == 4
    assert invoice_row(db, second).dunning_level == 2 and invoice_row(db, first).dunning_level == 2
    assert len([r for r in ledger_rows(db, rule="level-1b") if r.status == "done"]) == 4
    assert second in {int(r.subject.split(":")[1]) for r in ledger_rows(db, rule="level-1b")}


def test_rules_on_payments_invoice_changes_and_cancelled_meetings(db: Database, tmp_path: Path) -> None:
    from maild.business import invoices, meetings
    from maild.own_mail import OwnMail

    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    ruleset = rules(
        rule("thank-for-payment", on_event("payment.recorded"),
             [task("Thank {{ thirdparty.name }}: {{ event.data.amount }} for {{ invoice.ref }}")]),
        rule("watch-disputes", on_event("invoice.updated"),
             [("note", NoteAction(text=text("{{ invoice.ref }} is {{ invoice.status }}")))],
             conditions=('invoice.status == "disputed"',)),
        rule("meeting-off", on_event("meeting.cancelled"),
             [("note", NoteAction(text=text("cancelled: {{ meeting.subject }}")))]))
    engine = RulesEngine(config, db, ruleset, clock=FakeClock(at(DUE)))
    invoices.upsert_invoice(db, ref="FA-90", thirdparty_id=tp, issued_on=DUE, due_on=DUE + 14 * D, amount="100.00")
    invoices.record_payment(db, "FA-90", amount="40", paid_on=DUE + D, reference="B-1")
    invoices.set_status(db, "FA-90", "disputed")
    meeting = meetings.add_meeting(db, OwnMail.from_config(config), subject="Kick-off", thirdparty_id=tp,
                                   start_at=at(DUE + D), end_at=at(DUE + D, 10))
    meetings.cancel_meeting(db, str(meeting))
    assert engine.process_events() == 3
    with db.engine.connect() as conn:
        [title] = conn.execute(select(Task.__table__.c.title)).scalars().all()
    assert title == "Thank Müller Bau GmbH: 40.00 for FA-90"
    assert [e.data["text"] for e in events(db, "note.added")] == ["FA-90 is disputed", "cancelled: Kick-off"]


def test_postgresql_rules_do_not_wait_for_a_transaction_of_another_database(pg_url: str, tmp_path: Path,
                                                                            other_database_busy: None) -> None:
    """A permanent gap (a rolled-back insert) is passed once its transaction is over, while another database on
    the server has a transaction open: long before `gap_timeout`, whatever the other application does."""
    db, engine, clock, tp = _pg_engine(pg_url, tmp_path)
    try:
        with psycopg.connect(pg_url) as aborted:
            aborted.execute(PG_INSERT, (tp, '{"subject": "never"}'))
            aborted.rollback()
        add_event(db, "mail.matched", tp, subject="after the gap")
        assert engine.process_events() == 0  # the gap is new: held a moment
        clock.advance(seconds=3)
        assert engine.cursor.gap_timeout > timedelta(minutes=1)  # not passed by the timeout
        assert engine.process_events() == 2
        assert [n.data["text"] for n in events(db, "note.added")] == ["mail after the gap (mail.matched)"]
    finally:
        db.dispose()


def test_postgresql_gap_held_by_a_transaction_with_a_newer_xid_is_not_skipped(pg_url: str, tmp_path: Path,
                                                                             other_database_busy: None) -> None:
    """The holder of the missing id may have a newer transaction id than anything committed (so a snapshot does
    not list it among those in progress): the gap still waits for it."""
    db, engine, clock, tp = _pg_engine(pg_url, tmp_path)
    insert = PG_INSERT
    try:
        with psycopg.connect(pg_url) as early, psycopg.connect(pg_url) as slow:
            early.execute("SELECT pg_current_xact_id()")  # the older transaction id ...
            low = slow.execute(insert, (tp, '{"subject": "slow"}')).fetchone()[0]  # type: ignore[index]
            high = early.execute(insert, (tp, '{"subject": "early"}')).fetchone()[0]  # type: ignore[index]
            early.commit()  # ... commits the higher event id; the newer transaction holds the lower one
            assert low < high
            for _ in range(3):
                assert engine.process_events() == 0
                clock.advance(seconds=30)
            slow.commit()
        clock.advance(seconds=30)
        assert engine.process_events() == 4
        assert sorted(n.data["text"] for n in events(db, "note.added")) == ["mail early (mail.matched)",
                                                                           "mail slow (mail.matched)"]
    finally:
        db.dispose()
