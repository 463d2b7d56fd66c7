"""Rules and machine mail (SQLite and PostgreSQL): no rule mail in answer to machine mail, rule mail marked
auto-generated, the daily cap per address with what it held back on the timeline, and replied_since() counting
only mail a person wrote (auto_replied_since() for the rest)."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import event, select, update

from maild.directory.service import add_contact
from maild.rules.engine import RulesEngine
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.store.models import Message, Task
from tests.rules.test_engine_support import (
    FakeClock,
    add_event,
    customer,
    events,
    inbound_mail,
    make_config,
    on_event,
    outbox_rows,
    rule,
    rules,
    send,
    task,
)

NOW = datetime(2026, 11, 26, 9, tzinfo=UTC)


def kind(db: Database, message_id: int, value: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(Message.__table__).where(Message.__table__.c.id == message_id).values(kind=value))


def test_no_rule_mail_answers_machine_mail_but_other_actions_still_run(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    ruleset = rules(rule("answer", on_event("mail.matched"), [send(template="notice", to="message.from")]),
                    rule("note-it", on_event("mail.matched"), [task("Look at {{ message.subject }}")]))
    engine = RulesEngine(config, db, ruleset, clock=FakeClock(NOW))
    ooo = inbound_mail(db, tp, "anna@mueller.example", NOW, subject="Out of Office")
    kind(db, ooo, "auto_reply")
    add_event(db, "mail.matched", tp, ooo, matcher="thread")
    assert engine.process_events() == 1  # the task only
    assert outbox_rows(db) == []
    person = inbound_mail(db, tp, "anna@mueller.example", NOW + timedelta(minutes=1), subject="A question")
    add_event(db, "mail.matched", tp, person, matcher="address")
    assert engine.process_events() == 2
    [row] = outbox_rows(db)
    assert row.recipients == ["anna@mueller.example"]
    sent = email.message_from_bytes(BlobStore(config.blob_dir).get(row.raw_sha256))
    assert sent["Auto-Submitted"] == "auto-generated" and sent["X-Auto-Response-Suppress"] == "All"


def test_the_daily_cap_holds_back_rule_mail_and_says_so(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db, machine_mail={"rule_mail_daily_cap": 2})
    tp, _ = customer(db)
    answer = rule("answer", on_event("mail.matched"), [send(template="notice", to="message.from")])
    engine = RulesEngine(config, db, rules(answer), clock=FakeClock(NOW))
    for minute in range(3):
        message = inbound_mail(db, tp, "anna@mueller.example", NOW + timedelta(minutes=minute), subject=f"m{minute}")
        add_event(db, "mail.matched", tp, message, matcher="address")
        engine.process_events()
    assert len(outbox_rows(db)) == 2
    [held] = events(db, "rule.held_back")
    assert held.thirdparty_id == tp and held.data["to"] == "anna@mueller.example"
    assert "already sent 2 mails" in held.data["reason"]


def test_replied_since_counts_people_and_auto_replied_since_the_rest(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    ruleset = rules(rule("check", on_event("invoice.created"),
                         [task("replied={{ replied_since(none) }} auto={{ auto_replied_since(none) }}")]))
    engine = RulesEngine(config, db, ruleset, clock=FakeClock(NOW))
    ooo = inbound_mail(db, tp, "anna@mueller.example", NOW - timedelta(days=1), subject="Automatic reply")
    kind(db, ooo, "auto_reply")
    add_event(db, "invoice.created", tp)
    engine.process_events()
    person = inbound_mail(db, tp, "anna@mueller.example", NOW - timedelta(hours=1), subject="Re: invoice")
    kind(db, person, "human")
    add_event(db, "invoice.created", tp)
    RulesEngine(config, db, ruleset, clock=FakeClock(NOW)).process_events()
    with db.engine.connect() as conn:
        titles = [row.title for row in conn.execute(select(Task.__table__).order_by(Task.__table__.c.id))]
    assert titles == ["replied=False auto=True", "replied=True auto=True"]


def test_mail_without_a_kind_counts_as_a_persons_until_the_backfill_reaches_it(db: Database, tmp_path: Path) -> None:
    """Stored before classification: replied_since() counts it (the cautious side for reminders) until the backfill
    finds it is an out-of-office reply (docs/machine-mail.md, "Mail stored before classification")."""
    from maild.classify.backfill import backfill
    from maild.classify.settings import classify_settings
    from tests.classify.test_backfill import auto_reply

    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    ruleset = rules(rule("check", on_event("invoice.created"),
                         [task("replied={{ replied_since(none) }} auto={{ auto_replied_since(none) }}")]))
    ooo = inbound_mail(db, tp, "anna@mueller.example", NOW - timedelta(days=1), subject="Re: invoice", kind=None)
    blobs = BlobStore(config.blob_dir)
    with db.engine.begin() as conn:
        conn.execute(update(Message.__table__).where(Message.__table__.c.id == ooo)
                     .values(raw_sha256=blobs.put(auto_reply())))
    add_event(db, "invoice.created", tp)
    RulesEngine(config, db, ruleset, clock=FakeClock(NOW)).process_events()
    settings = classify_settings(config)
    assert settings is not None and backfill(db, blobs, settings).kinds == {"auto_reply": 1}
    add_event(db, "invoice.created", tp)
    RulesEngine(config, db, ruleset, clock=FakeClock(NOW)).process_events()
    with db.engine.connect() as conn:
        titles = [row.title for row in conn.execute(select(Task.__table__).order_by(Task.__table__.c.id))]
    assert titles == ["replied=True auto=False", "replied=False auto=True"]


def test_the_daily_cap_reads_the_rule_mail_of_a_batch_once_not_per_recipient(db: Database, tmp_path: Path) -> None:
    """Three events in one batch, each sending to four addresses: the cap's look-up is one statement for the
    batch (before: one per recipient and event, 12 here, and one more per address at the cap); the batch's
    own mail is counted on in memory, so the third event is held back for all four."""
    config = make_config(tmp_path, db, machine_mail={"rule_mail_daily_cap": 2})
    tp, _ = customer(db)
    for name in ("bert@mueller.example", "carla@mueller.example", "dora@other.example"):
        add_contact(db, thirdparty_id=tp, name=name.split("@")[0].title(), addresses=[name])
    team = "[message.from, 'bert@mueller.example', 'carla@mueller.example', 'dora@other.example']"
    answer = rule("answer", on_event("mail.matched"), [send(template="notice", to=team)])
    engine = RulesEngine(config, db, rules(answer), clock=FakeClock(NOW))
    for minute in range(3):
        message = inbound_mail(db, tp, "anna@mueller.example", NOW + timedelta(minutes=minute), subject=f"m{minute}")
        add_event(db, "mail.matched", tp, message, matcher="address")
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        engine.process_events()
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert len([s for s in statements if "outbox.created_at >" in s]) == 1
    assert len(outbox_rows(db)) == 8
    held = events(db, "rule.held_back")
    assert sorted(e.data["to"] for e in held) == ["anna@mueller.example", "bert@mueller.example",
                                                  "carla@mueller.example", "dora@other.example"]


def test_an_event_about_mail_stored_before_classification_is_judged_by_the_chain_first(
        db: Database, tmp_path: Path) -> None:
    """An out-of-office reply stored before classification (no kind, not yet reached by the backfill) is classified
    when an event about it reaches the rules: it is machine mail, so no rule mail answers it; a simulation looks
    at it the same way and writes nothing."""
    from tests.classify.test_backfill import auto_reply

    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    ruleset = rules(rule("answer", on_event("mail.matched"), [send(template="notice", to="message.from")]),
                    rule("note-it", on_event("mail.matched"), [task("Look at {{ message.subject }}")]))
    ooo = inbound_mail(db, tp, "anna@mueller.example", NOW, subject="Out of Office", kind=None)
    with db.engine.begin() as conn:
        conn.execute(update(Message.__table__).where(Message.__table__.c.id == ooo)
                     .values(raw_sha256=BlobStore(config.blob_dir).put(auto_reply())))
    add_event(db, "mail.matched", tp, ooo, matcher="thread")
    planned = RulesEngine(config, db, ruleset, clock=FakeClock(NOW)).simulate(NOW - timedelta(hours=1))
    assert [p.rule for p in planned] == ["note-it"]  # the answer is not even planned
    with db.engine.connect() as conn:
        assert conn.execute(select(Message.__table__.c.kind).where(Message.__table__.c.id == ooo)).scalar() is None
    assert RulesEngine(config, db, ruleset, clock=FakeClock(NOW)).process_events() == 1  # the task only
    assert outbox_rows(db) == []
    with db.engine.connect() as conn:
        assert conn.execute(select(Message.__table__.c.kind).where(Message.__table__.c.id == ooo)).scalar() \
            == "auto_reply"
