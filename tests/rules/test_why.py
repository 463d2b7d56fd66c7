"""`maild rules why RULE SUBJECT`: the engine's own evaluation of one subject, explained (window, conditions with
the values seen, actions), on rules loaded from YAML by the real loader; nothing written."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from maild.cli.context import AppContext
from maild.cli.rules_why import why_command
from maild.rules.engine import RulesEngine
from maild.rules.loader import load_rules
from maild.store.db import Database
from maild.store.models import Event, RuleLedger
from tests.rules.test_engine_support import (
    add_event,
    count,
    customer,
    inbound_mail,
    invoice,
    invoice_row,
    ledger_rows,
    make_config,
    outbox_rows,
)

RULES = """
rules:
  - name: level-2
    on: {sweep: invoice, date: due_on, offset: 21d, until: 35d}
    if:
      - invoice.status == "open"
      - invoice.dunning_level < 2
      - not replied_since(invoice.last_dunned_at or invoice.due_on)
    do:
      - send: {template: reminder, to: contact}
      - set: {invoice.dunning_level: 2}
  - name: note-on-matched
    on: {event: mail.matched}
    if: thirdparty.owner != none
    do:
      - note: "mail from {{ thirdparty.name }}"
"""
DUE = date(2026, 11, 3)


def setup(db: Database, tmp_path: Path) -> tuple[AppContext, int, int]:
    make_config(tmp_path, db)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "pack.yaml").write_text(RULES)
    tp, _ = customer(db)
    invoice_id = invoice(db, tp, "FA2611-0105", DUE)
    return AppContext(str(tmp_path / "maild.yaml"), False), tp, invoice_id


def why(app: AppContext, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(why_command, list(args), obj=app)
    return result.exit_code, result.output


def test_why_explains_the_window_conditions_and_values_of_a_sweep(db: Database, tmp_path: Path) -> None:
    app, tp, invoice_id = setup(db, tmp_path)
    events_before = count(db, Event.__table__)

    code, out = why(app, "level-2", "invoice:FA2611-0105", "--at", "2026-11-10")
    assert code == 3, out
    assert "invoice.due_on = 2026-11-03; the window (due_on+21d..+35d) opens 2026-11-24T00:00+01:00" in out
    assert "not yet: now (2026-11-10T09:00+01:00) is before the window opens" in out
    assert out.rstrip().endswith("is before the window opens (2026-11-24T00:00+01:00)")

    code, out = why(app, "level-2", f"invoice:{invoice_id}", "--at", "2026-11-30")
    assert code == 0, out
    assert "now (2026-11-30T09:00+01:00) is in the window" in out
    assert "holds  invoice.dunning_level < 2" in out and "invoice.dunning_level = 0" in out
    assert "action send: planned: send reminder to anna@" in out
    assert out.rstrip().splitlines()[-1].startswith("would fire: send reminder to anna@")

    code, out = why(app, "level-2", "invoice:FA2611-0105", "--at", "2026-12-20T12:00")
    assert code == 3 and "too late: now (2026-12-20T12:00+01:00) is past the window's end (2026-12-08T00:00+01:00)" \
        in out, out

    # A mail from the customer after the due date: the condition that stops it, with what it saw.
    inbound_mail(db, tp, "anna@mueller.example", datetime(2026, 11, 20, 8, tzinfo=UTC))
    code, out = why(app, "level-2", "invoice:FA2611-0105", "--at", "2026-11-30", "--json")
    assert code == 3
    data = json.loads(out)
    assert data["gate_open"] is True and data["fires"] is False
    failed = [c for c in data["conditions"] if not c["held"]]
    assert [c["source"] for c in failed] == ["not replied_since(invoice.last_dunned_at or invoice.due_on)"]
    assert failed[0]["seen"] == {"replied_since(invoice.last_dunned_at or invoice.due_on)": "true",
                                 "invoice.last_dunned_at or invoice.due_on": "2026-11-03",
                                 "invoice.last_dunned_at": "none", "invoice.due_on": "2026-11-03"}
    assert data["verdict"] == ("would not fire: the condition `not replied_since(invoice.last_dunned_at or "
                               "invoice.due_on)` does not hold")
    # Explaining writes nothing.
    assert ledger_rows(db) == [] and outbox_rows(db) == [] and count(db, Event.__table__) == events_before


def test_why_says_when_the_ledger_has_it_done_and_for_events(db: Database, tmp_path: Path) -> None:
    app, tp, _ = setup(db, tmp_path)
    config = app.config
    ruleset = load_rules(tmp_path / "rules", timezone=config.rules.timezone)
    moment = datetime(2026, 11, 30, 9, tzinfo=UTC)
    engine = RulesEngine(config, db, ruleset, clock=lambda: moment)
    assert engine.sweep() == 2
    explanation = engine.explain("level-2", "invoice:FA2611-0105")
    assert not explanation.fires
    assert [c.held for c in explanation.conditions] == [True, False, True]  # level 2 now: `< 2` fails
    assert ("invoice.dunning_level", "2") in explanation.conditions[1].seen

    received = add_event(db, "mail.received", tp)
    code, out = why(app, "note-on-matched", f"event:{received}")
    assert code == 3 and "the rule reacts to mail.matched; this event is mail.received" in out, out
    matched = add_event(db, "mail.matched", tp)
    code, out = why(app, "note-on-matched", f"event:{matched}")
    assert code == 0 and "holds  thirdparty.owner != none" in out and "thirdparty.owner = 'owner@ourco.example'" \
        in out, out
    assert count(db, RuleLedger.__table__) == 2  # only the sweep's two actions

    code, out = why(app, "level-2", "invoice:NOPE")
    assert code == 1 and "no invoice 'NOPE'" in out
    code, out = why(app, "nope", "invoice:1")
    assert code == 1 and "no rule named 'nope' (rules: level-2, note-on-matched)" in out
    code, out = why(app, "level-2", "event:1")
    assert code == 1 and "level-2 sweeps invoices; give a subject invoice:ID" in out


def test_invoice_show_names_the_next_dunning_step(db: Database, tmp_path: Path) -> None:
    from maild.cli.business import invoice as invoice_group
    from maild.rules.next_step import next_step

    app, _, invoice_id = setup(db, tmp_path)
    ruleset = load_rules(tmp_path / "rules", timezone=app.config.rules.timezone)
    step = next_step(app.config, db, ruleset, invoice_id, datetime(2026, 11, 10, 9, tzinfo=UTC))
    assert step is not None and step.rule == "level-2"
    assert step.at.isoformat() == "2026-11-24T00:00:00+01:00" and step.summary.startswith("send reminder to anna@")
    # Once its window is past and nothing else would act: none.
    assert next_step(app.config, db, ruleset, invoice_id, datetime(2026, 12, 20, 9, tzinfo=UTC)) is None
    tp = invoice_row(db, invoice_id).thirdparty_id
    invoice(db, tp, "FA-LATE", date.today() - timedelta(days=40))  # past every window of the pack
    invoice(db, tp, "FA-NOW", date.today() - timedelta(days=25))  # in level-2's window now
    result = CliRunner().invoke(invoice_group, ["show", "FA-LATE"], obj=app)
    assert result.exit_code == 0, result.output
    assert "next step: none (no rule would act on this invoice as it stands)" in result.output
    result = CliRunner().invoke(invoice_group, ["show", "FA-NOW"], obj=app)
    assert result.exit_code == 0 and "next step: level-2 from " in result.output, result.output
    assert ": send reminder to anna@mueller.example; set invoice.dunning_level=2" in result.output
    assert ledger_rows(db) == [] and outbox_rows(db) == []


def test_why_for_a_meeting_sweep_names_the_contact_after_the_meeting(db: Database, tmp_path: Path) -> None:
    from maild.business.meetings import add_meeting
    from maild.own_mail import OwnMail

    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    end = datetime(2026, 11, 19, 14, 30, tzinfo=UTC)
    meeting = add_meeting(db, OwnMail.from_config(config), subject="Projekt", start_at=end - timedelta(hours=1),
                          end_at=end, thirdparty_id=tp, attendees=["anna@mueller.example"], owner="lena@ourco.example")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "followup.yaml").write_text("""
rules:
  - name: followup
    on: {sweep: meeting, date: end_at, offset: 2h, until: 7d}
    if:
      - attendees
      - not replied_since(meeting.end_at)
    do:
      - send: {template: followup, to: attendees}
""")
    ruleset = load_rules(tmp_path / "rules", timezone=config.rules.timezone)
    engine = RulesEngine(config, db, ruleset, clock=lambda: end + timedelta(hours=3))
    explanation = engine.explain("followup", f"meeting:{meeting}")
    assert explanation.fires and explanation.what == f"meeting {meeting} of Müller Bau GmbH"
    assert explanation.gate[-1] == "now (2026-11-19T18:30+01:00) is in the window"
    inbound_mail(db, tp, "anna@mueller.example", end + timedelta(hours=1), subject="Danke für heute")
    explanation = engine.explain("followup", f"meeting:{meeting}")
    assert not explanation.fires
    assert explanation.conditions[1].seen[0] == ("replied_since(meeting.end_at)", "true")
    assert explanation.verdict() == "would not fire: the condition `not replied_since(meeting.end_at)` does not hold"
