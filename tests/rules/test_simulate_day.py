"""`maild rules simulate --at TIME | --days N`: what every rule would do on that day given today's data; nothing
is written."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from maild.cli.context import AppContext
from maild.cli.rules_history import simulate_command
from maild.store.db import Database
from maild.store.models import Event, Invoice, OutboxMessage, RuleCursor, RuleLedger, Task
from tests.rules.test_engine_support import customer, invoice, make_config

RULES = """
rules:
  - name: level-1
    on: {sweep: invoice, date: due_on, offset: 7d, until: 21d}
    if: invoice.status == "open" and invoice.dunning_level < 1
    do:
      - send: {template: reminder, to: contact}
      - set: {invoice.dunning_level: 1, invoice.last_dunned_at: now}
  - name: level-2
    on: {sweep: invoice, date: due_on, offset: 21d}
    if: invoice.status == "open" and invoice.dunning_level < 2
    do:
      - send: {template: reminder, to: contact}
      - task: "call about {{ invoice.ref }}"
  - name: weekday-report
    on: {schedule: {cron: "0 8 * * mon-fri"}}
    do:
      - task: {title: "look at the overdue list", owner: '"boss@ourco.example"'}
"""


def snapshot(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        return [list(conn.execute(select(table).order_by(*table.primary_key.columns)))
                for table in (Invoice.__table__, OutboxMessage.__table__, RuleLedger.__table__, Event.__table__,
                              Task.__table__, RuleCursor.__table__)]


def test_simulate_a_day_ahead_writes_nothing(db: Database, tmp_path: Path) -> None:
    make_config(tmp_path, db)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "pack.yaml").write_text(RULES)
    tp, _ = customer(db)
    today = date.today()
    invoice(db, tp, "FA-A", today - timedelta(days=3))  # level-1 in 4 days, level-2 in 18
    invoice(db, tp, "FA-B", today + timedelta(days=10))  # level-1 in 17 days
    app = AppContext(str(tmp_path / "maild.yaml"), False)
    before = snapshot(db)

    def simulate(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(simulate_command, list(args), obj=app)
        return result.exit_code, result.output

    code, out = simulate("--days", "0", "--json")
    assert code == 0, out
    assert [p["rule"] for p in json.loads(out) if p["rule"] != "weekday-report"] == []

    code, out = simulate("--days", "5", "--json")
    assert code == 0, out
    planned = [(p["rule"], p["subject"], p["action"]) for p in json.loads(out) if p["rule"] != "weekday-report"]
    assert planned == [("level-1", "invoice:1", "send"), ("level-1", "invoice:1", "set")]

    code, out = simulate("--days", "19")
    assert code == 0, out
    assert "planned      level-2  invoice:1  send: send reminder to anna@mueller.example" in out
    assert "planned      level-1  invoice:2  send" in out
    assert "level-1  invoice:1" not in out  # its window has ended by then

    # A weekday at a fixed date: the schedule rule's 08:00 run is listed; a Sunday has none.
    monday, sunday = "2026-12-07", "2026-12-06"
    code, out = simulate("--at", monday, "--json")
    reports = [p for p in json.loads(out) if p["rule"] == "weekday-report"]
    assert code == 0 and len(reports) == 1 and reports[0]["subject"].startswith("schedule:2026-12-07T07:00:00+00:00")
    assert reports[0]["summary"].startswith("task 'look at the overdue list'")
    code, out = simulate("--at", sunday, "--json")
    assert code == 0 and [p for p in json.loads(out) if p["rule"] == "weekday-report"] == []

    code, out = simulate("--at", monday, "--days", "3")
    assert code == 2 and "give one of --since, --at and --days" in out
    code, out = simulate("--at", "next tuesday")
    assert code == 2 and "expected a date (2026-12-01) or a date and time" in out
    assert snapshot(db) == before


def test_simulate_counts_a_promise_whose_date_has_passed_as_released(db: Database, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from maild.business import holds

    config = make_config(tmp_path, db)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "pack.yaml").write_text(RULES)
    tp, _ = customer(db)
    promised = invoice(db, tp, "FA-P", date.today() - timedelta(days=25))  # level-2 window: open now
    with db.engine.begin() as conn:
        holds.promise(conn, config, "FA-P", date.today() + timedelta(days=2), datetime.now(UTC))
    app = AppContext(str(tmp_path / "maild.yaml"), False)
    before = snapshot(db)

    def planned(days: int) -> list[tuple[str, str, str]]:
        result = CliRunner().invoke(simulate_command, ["--days", str(days), "--json"], obj=app)
        assert result.exit_code == 0, result.output
        return [(p["rule"], p["subject"], p["action"]) for p in json.loads(result.output)
                if p["rule"] != "weekday-report"]

    assert planned(1) == []  # still waiting for the promised payment
    assert planned(4) == [("level-2", f"invoice:{promised}", "send"), ("level-2", f"invoice:{promised}", "task")]
    assert snapshot(db) == before
