"""The scheduler glue: one active scheduler per database among several daemons, takeover, jobs in the DB,
schedule rules once per occurrence, reload keeping the last good set."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import select

from maild.business.invoices import upsert_invoice
from maild.config import Config
from maild.directory.service import add_thirdparty
from maild.rules.scheduler import RulesRunner
from maild.store import leases
from maild.store.db import Database
from maild.store.models import RuleLedger, ThirdParty, apscheduler_jobs

RULES = """
rules:
  - name: tag-new-invoices
    on: {event: invoice.created}
    do:
      - tag: billed
  - name: hourly-digest
    on: {schedule: {every: 1h}}
    do:
      - webhook: {url: "http://127.0.0.1:9/digest", secret: digest}
"""


def wait_for(predicate: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def make_config(tmp_path: Path, db: Database, rules: str = RULES) -> Config:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "pack.yaml").write_text(rules)
    return Config.model_validate({"database": {"url": db.url}, "base_dir": tmp_path,
                                  "rules": {"event_interval": 0.2, "sweep_interval": 1, "lease_ttl": 6,
                                            "webhook_secrets": {"digest": {"env": "MAILD_TEST_WEBHOOK_SECRET"}},
                                            "webhook_allow_networks": ["127.0.0.1"]}})


def tags(db: Database, tp: int) -> list[str]:
    with db.engine.connect() as conn:
        return conn.execute(select(ThirdParty.__table__.c.tags).where(ThirdParty.__table__.c.id == tp)).scalar_one()


def test_one_active_scheduler_per_database_and_takeover(tmp_path: Path, db: Database) -> None:
    config = make_config(tmp_path, db)
    first = RulesRunner(config, db, "host-a:1:first")
    second = RulesRunner(config, db, "host-b:2:second")
    first.start()
    wait_for(lambda: first.active)
    second.start()
    try:
        time.sleep(2.5)  # the second one has tried at least once
        assert first.active and not second.active
        assert leases.holder(db, "rules-scheduler") == "host-a:1:first"
        with db.engine.connect() as conn:
            jobs = set(conn.execute(select(apscheduler_jobs.c.id)).scalars())
        assert jobs == {"maild:events", "maild:sweep", "rule:hourly-digest"}, "the jobs live in maild's database"

        tp = add_thirdparty(db, name="ACME")
        upsert_invoice(db, ref="A-1", thirdparty_id=tp, issued_on=date(2026, 11, 1), due_on=date(2026, 11, 30),
                       amount="100")
        wait_for(lambda: tags(db, tp) == ["billed"])

        first.stop()
        wait_for(lambda: second.active, timeout=60)
        upsert_invoice(db, ref="A-2", thirdparty_id=tp, issued_on=date(2026, 11, 1), due_on=date(2026, 11, 30),
                       amount="50")
        # Only this rule's entries: the pack's scheduled rules fire on the real clock (at the top of an hour, say).
        ledger = RuleLedger.__table__
        tagging = select(ledger.c.key).where(ledger.c.rule == "tag-new-invoices").order_by(ledger.c.id)
        with db.engine.connect() as conn:
            wait_for(lambda: len(conn.execute(tagging).all()) >= 2)
        time.sleep(1.0)
        with db.engine.connect() as conn:
            keys = conn.execute(tagging).scalars().all()
        assert len(keys) == 2 and len(set(keys)) == 2, "each invoice's event handled once, across the takeover"
        assert tags(db, tp) == ["billed"]
    finally:
        first.stop()
        second.stop()


def test_reload_keeps_the_last_good_set(tmp_path: Path, db: Database) -> None:
    config = make_config(tmp_path, db)
    runner = RulesRunner(config, db, "host-a:1:first")
    runner.start()
    try:
        (tmp_path / "rules" / "pack.yaml").write_text(RULES.replace("event: invoice.created", "event: invoice.creatd"))
        assert runner.reload() is False
        assert [r.name for r in runner.rules.rules] == ["tag-new-invoices", "hourly-digest"]
        (tmp_path / "rules" / "pack.yaml").write_text(RULES.split("  - name: hourly-digest")[0])
        assert runner.reload() is True
        assert [r.name for r in runner.rules.rules] == ["tag-new-invoices"]
        wait_for(lambda: runner.active)
        with db.engine.connect() as conn:
            wait_for(lambda: set(conn.execute(select(apscheduler_jobs.c.id)).scalars())
                     == {"maild:events", "maild:sweep"})
    finally:
        runner.stop()


def test_a_schedule_runs_once_per_occurrence(tmp_path: Path, db: Database) -> None:
    config = make_config(tmp_path, db)
    now = datetime(2026, 11, 27, 10, 20, tzinfo=UTC)
    runner = RulesRunner(config, db, "host-a:1:first", clock=lambda: now)
    runner.start()
    try:
        runner.run("schedule", "hourly-digest")
        runner.run("schedule", "hourly-digest")  # the same occurrence again (a takeover, a restart)
        with db.engine.connect() as conn:
            keys = conn.execute(select(RuleLedger.__table__.c.key)).scalars().all()
        assert len(keys) == 1 and "2026-11-27T10:00:00" in keys[0]
    finally:
        runner.stop()
