"""Rules that trigger each other stop after MAX_CHAIN actions in a row, and say so in the ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from maild.rules import ledger
from maild.rules.engine import MAX_CHAIN, RulesEngine
from maild.rules.model import NoteAction
from maild.store.db import Database
from maild.store.models import RuleLedger
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


def test_a_rule_sending_on_every_sent_mail_stops_and_manual_sends_are_no_chain(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    ruleset = rules(rule("copy-the-boss", on_event("mail.sent"), [task("copy {{ event.id }}")]))
    engine = RulesEngine(config, db, ruleset, clock=FakeClock(NOW))
    previous = add_event(db, "mail.sent", tp, key="k-1")  # `maild send --key k-1`: not a rule's
    for depth in range(MAX_CHAIN + 1):
        engine.process_events()
        key = f"copy-the-boss:event:{previous}:0"
        if depth < MAX_CHAIN:
            assert ledger_rows(db, key=key)[0].status == "done"
        # the mail that action sent, to two recipients: its outbox keys are KEY/address
        previous = add_event(db, "mail.sent", tp, key=f"{key}/boss@ourco.example")
    statuses = [row.status for row in ledger_rows(db)]
    assert statuses == ["done"] * MAX_CHAIN + ["failed"]
    with db.engine.connect() as conn:
        assert ledger.cause_of(conn, "copy-the-boss:event:1:0/a/b@x.example").key == "copy-the-boss:event:1:0"
        assert ledger.cause_of(conn, "k-1") is None
        assert conn.execute(RuleLedger.__table__.select()).first() is not None
