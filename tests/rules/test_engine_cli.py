"""`maild rules simulate` and `maild rules log`, on rules loaded from YAML by the real loader."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

from click.testing import CliRunner

from maild.cli.context import AppContext
from maild.cli.rules_history import log_command, simulate_command
from maild.clock import utcnow
from maild.rules.engine import RulesEngine
from maild.rules.loader import load_rules
from maild.store.db import Database
from tests.rules.test_engine_support import customer, invoice, ledger_rows, make_config, outbox_rows

RULES = """
rules:
  - name: level-1
    on: {sweep: invoice, date: due_on, offset: 7d}
    if:
      - invoice.status == "open"
    do:
      - send: {template: reminder, to: contact}
      - set: {invoice.dunning_level: 1}
"""


def test_simulate_lists_and_log_explains(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "dunning.yaml").write_text(RULES)
    tp, _ = customer(db)
    overdue = date.today() - timedelta(days=10)
    invoice(db, tp, "FA-1", overdue)
    invoice(db, tp, "FA-2", date.today() + timedelta(days=10))
    app = AppContext(str(tmp_path / "maild.yaml"), False)

    def run(command: object, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(command, list(args), obj=app)  # type: ignore[arg-type]
        return result.exit_code, result.output

    code, out = run(simulate_command, "--since", "30d")
    assert code == 0, out
    assert "planned      level-1  invoice:1  send: send reminder to anna@" in out
    assert "why: sweep invoice FA-1 due_on+7d" in out and "2 action(s) would run" in out
    assert ledger_rows(db) == [] and outbox_rows(db) == []
    code, out = run(simulate_command, "--json")
    assert code == 0 and [p["action"] for p in json.loads(out)] == ["send", "set"]

    ruleset = load_rules(tmp_path / "rules", timezone=config.rules.timezone)
    RulesEngine(config, db, ruleset, clock=utcnow).sweep()
    code, out = run(log_command, "--since", "7d")
    assert code == 0 and "done    level-1  invoice:1  send: send reminder to anna@" in out, out
    assert 'why: sweep invoice FA-1 due_on+7d' in out and 'invoice.status == "open"' in out
    code, out = run(log_command, "--subject", "invoice:1", "--status", "done", "--json")
    assert code == 0 and [(e["action"], e["status"]) for e in json.loads(out)] == [("send", "done"), ("set", "done")]
    for status in ("failed", "skipped"):
        code, out = run(log_command, "--status", status)
        assert code == 0 and "no rule actions recorded for that selection" in out
    code, out = run(simulate_command)
    assert code == 0 and "already done" in out
    assert run(log_command, "--since", "yesterday-ish")[0] == 2
