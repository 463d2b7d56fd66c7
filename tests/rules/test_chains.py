"""Rules that trigger each other stop after MAX_CHAIN actions in a row, and say so in the ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from maild.rules import ledger
from maild.rules.engine import MAX_CHAIN, RulesEngine
from maild.rules.model import NoteAction
from maild.store.db import Database
from tests.rules.test_engine_support import (
    FakeClock,
    add_event,
    customer,
    events,
    ledger_rows,
    make_config,
    on_event,
    rule,
    rules,
    task,
    text,
)

NOW = datetime(2026, 11, 26, 9, tzinfo=UTC)


def test_two_rules_that_trigger_each_other_stop_after_max_chain_actions(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    ruleset = rules(
        rule("note-on-task", on_event("task.created"), [("note", NoteAction(text=text("saw {{ event.id }}")))]),
        rule("task-on-note", on_event("note.added"), [task("follow up {{ event.id }}")]))
    engine = RulesEngine(config, db, ruleset, clock=FakeClock(NOW))
    add_event(db, "task.created", tp, title="called the customer")  # by a person: no cause
    for _ in range(3 * MAX_CHAIN):
        engine.process_events()
    done = [row.rule for row in ledger_rows(db) if row.status == "done"]
    assert done == ["note-on-task", "task-on-note"] * (MAX_CHAIN // 2) + ["note-on-task"] * (MAX_CHAIN % 2)
    [stopped] = [row for row in ledger_rows(db) if row.status == "failed"]
    assert stopped.rule == "task-on-note" and stopped.action == "if"
    assert f"the end of {MAX_CHAIN} rule actions in a row" in stopped.detail["error"]
    assert "note-on-task -> task-on-note -> note-on-task" in stopped.detail["error"]
    notes = events(db, "note.added")
    assert len(notes) == (MAX_CHAIN + 1) // 2 and all(n.data["cause"].startswith("note-on-task:event:") for n in notes)


def test_a_rule_ignores_the_mail_it_sent_and_two_rules_sending_on_each_others_mail_stop(
        db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    alone = rules(rule("copy-the-boss", on_event("mail.sent"), [task("copy {{ event.id }}")]))
    first = add_event(db, "mail.sent", tp, key="k-1")  # `maild send --key k-1`: not a rule's
    assert RulesEngine(config, db, alone, clock=FakeClock(NOW)).process_events() == 1
    # the copy it sent (to two recipients: outbox keys KEY/address) is its own doing: no copy of the copy
    add_event(db, "mail.sent", tp, key=f"copy-the-boss:event:{first}:0/boss@ourco.example")
    assert RulesEngine(config, db, alone, clock=FakeClock(NOW)).process_events() == 0
    assert len(ledger_rows(db)) == 1

    pair = rules(rule("copy-a", on_event("mail.sent"), [task("a {{ event.id }}")]),
                 rule("copy-b", on_event("mail.sent"), [task("b {{ event.id }}")]))
    engine = RulesEngine(config, db, pair, clock=FakeClock(NOW))
    previous, by = add_event(db, "mail.sent", tp, key="k-2"), "copy-a"
    for _ in range(MAX_CHAIN):
        engine.process_events()
        # the mail `by` sent on the previous one: the other rule reacts to it, `by` does not
        previous = add_event(db, "mail.sent", tp, key=f"{by}:event:{previous}:0/boss@ourco.example")
        by = "copy-b" if by == "copy-a" else "copy-a"
    engine.process_events()
    rows = ledger_rows(db)[1:]
    assert [(r.rule, r.status) for r in rows] == [
        ("copy-a", "done"), ("copy-b", "done"),  # on the manual send: both
        ("copy-b", "done"), ("copy-a", "done"), ("copy-b", "done"), ("copy-a", "done"),  # chain of 1..4
        ("copy-b", "failed")]  # chain of 5: stopped
    assert "copy-a -> copy-b -> copy-a -> copy-b -> copy-a" in rows[-1].detail["error"]
    with db.engine.connect() as conn:
        assert ledger.cause_of(conn, "copy-a:event:1:0/a/b@x.example") is None  # no such action
        assert ledger.cause_of(conn, f"{rows[0].key}/x@y").key == rows[0].key
        assert ledger.cause_of(conn, "k-1") is None
