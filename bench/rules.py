"""Rules benchmark: the dunning sweep over 100,000 invoices (and 10,000, for linearity), against one SQL query.

For each size, a fresh database (SQLite in a temp dir, or a scratch PostgreSQL database with --database) gets
1,000 third parties with 1-2 contacts each and N invoices: 90% not overdue (60% paid, 30% open and not yet due,
some of those within the 3-day reminder window) and 10% open and overdue by 1-120 days at various dunning
levels (some already at the level their age calls for, some behind, some at level 3 with repeats), plus
inbound mail from a fifth of the third parties and a few mails from our own domain (the pack no longer stops on
any mail from the company: mail that concerns an invoice holds it, status held, which the status test covers).

Rules: maild/samples/rules/dunning.yaml (the shipped pack) in UTC.
- sweep: `RulesEngine(..., simulate=True).sweep()` -- the due set with reasons and planned actions, no sends,
  no writes (best of --rounds);
- baseline: one hand-written SQL query selecting the same due set (the union of every level's conditions),
  rows fetched (best of --rounds);
- the sweep's due set must equal the baseline's (asserted);
- real: one real sweep of the same rules with their `send` actions removed (DB-only: set, task), timed once.
The last line printed is JSON: rate (invoices swept per second, simulate), baseline_rate, ratio
(= baseline time / sweep time; higher is better, target >= 0.5), per-size figures and the per-invoice time at
10k vs 100k (linearity).

    .venv/bin/python bench/rules.py [--sizes 10000,100000] [--rounds 3]
                                    [--database postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import and_, or_, select  # noqa: E402

from maild.config import Config  # noqa: E402
from maild.rules.engine import RulesEngine  # noqa: E402
from maild.rules.loader import load_rules  # noqa: E402
from maild.rules.model import RuleSet  # noqa: E402
from maild.store.db import Database  # noqa: E402
from maild.store.models import (  # noqa: E402
    Contact,
    Document,
    Invoice,
    MailAddress,
    Message,
    MessageMatch,
    ThirdParty,
)

THIRDPARTIES = 1000
NOW = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
TODAY = NOW.date()
OWN_DOMAIN = "ourco.example"
D = timedelta(days=1)


def log(message: str) -> None:
    print(message, flush=True)


# --- data ------------------------------------------------------------------------------------------------


def fill(db: Database, size: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    created = NOW - 200 * D
    tps, contacts, addresses = [], [], []
    contact_id = 0
    for tp in range(1, THIRDPARTIES + 1):
        tps.append({"id": tp, "name": f"Customer {tp} GmbH", "name_key": f"customer {tp} gmbh", "kind": "customer",
                    "tags": [], "custom_fields": {}, "owner": f"owner{tp % 7}@{OWN_DOMAIN}", "language": "en",
                    "created_at": created, "updated_at": created})
        for n in range(rng.choice((1, 2))):
            contact_id += 1
            contacts.append({"id": contact_id, "thirdparty_id": tp, "name": f"Person {contact_id}",
                             "name_key": f"person {contact_id}", "role": "accounting" if n == 1 else None,
                             "phones": [], "created_at": created})
            addresses.append({"address": f"p{contact_id}@c{tp}.example", "thirdparty_id": tp,
                              "contact_id": contact_id})
    invoices, documents = [], []
    kinds = {"paid": 0, "open_future": 0, "overdue": 0}
    for n in range(1, size + 1):
        tp = rng.randrange(1, THIRDPARTIES + 1)
        roll = rng.random()
        level, repeats, last, status, paid = 0, 0, None, "open", Decimal("0")
        if roll < 0.10:  # overdue, at various levels
            age = rng.randrange(1, 121)
            due = TODAY - age * D
            called = 0 if age < 7 else 1 if age < 21 else 2 if age < 35 else 3
            level = called if rng.random() < 0.6 else max(0, called - rng.choice((1, 2)))
            if level:
                last = datetime.combine(due + [0, 7, 21, 35][level] * D, datetime.min.time(), UTC) + 8 * timedelta(
                    hours=1)
            if level == 3:
                repeats = rng.randrange(0, 4)
                last = NOW - rng.randrange(1, 30) * D
            status = rng.choice(("open",) * 17 + ("disputed", "paused", "open"))
            kinds["overdue"] += 1
        elif roll < 0.70:
            due = TODAY - rng.randrange(1, 200) * D
            status, paid = "paid", Decimal("0")
            kinds["paid"] += 1
        else:
            due = TODAY + rng.randrange(0, 60) * D
            kinds["open_future"] += 1
        amount = Decimal(rng.randrange(5000, 500000)) / 100
        if status == "paid":
            paid = amount
        invoices.append({"id": n, "ref": f"FA{n:07d}", "thirdparty_id": tp, "contact_id": None,
                         "issued_on": due - 14 * D, "due_on": due, "currency": "EUR", "amount": amount,
                         "paid_amount": paid, "status": status, "lines": [], "dunning_level": level,
                         "dunning_repeats": repeats, "last_dunned_at": last, "late_fees": Decimal("0"),
                         "paid_at": NOW - D if status == "paid" else None, "created_at": created,
                         "updated_at": created})
        documents.append({"ref": f"FA{n:07d}", "kind": "invoice", "thirdparty_id": tp})
    messages, matches = [], []
    for n, tp in enumerate(rng.sample(range(1, THIRDPARTIES + 1), THIRDPARTIES // 5), start=1):
        ours = n % 10 == 0
        when = NOW - rng.randrange(1, 90) * D
        sender = f"someone@{OWN_DOMAIN}" if ours else f"p{n}@c{tp}.example"
        messages.append({"id": n, "raw_sha256": f"{n:064x}", "size": 100, "from_addr": sender, "subject": "re",
                         "date": when, "ingested_at": when, "references": [], "to_addrs": [], "cc_addrs": [],
                         "reply_to": [], "defects": [], "text_body": "", "html_body": "", "parser": "bench"})
        matches.append({"message_id": n, "status": "matched", "thirdparty_id": tp, "matcher": "address",
                        "confidence": 1.0, "reason": "bench", "verdicts": [], "decided_at": when})
    with db.engine.begin() as conn:
        for table, rows in ((ThirdParty, tps), (Contact, contacts), (MailAddress, addresses), (Message, messages),
                            (MessageMatch, matches)):
            conn.execute(table.__table__.insert(), rows)  # type: ignore[attr-defined]
        for start in range(0, len(invoices), 5000):
            conn.execute(Invoice.__table__.insert(), invoices[start:start + 5000])
            conn.execute(Document.__table__.insert(), documents[start:start + 5000])
    if not db.is_sqlite:
        with db.engine.begin() as conn:
            for table in ("thirdparties", "contacts", "mail_addresses", "messages", "invoices", "documents"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT max(id) FROM {table}))")
            conn.exec_driver_sql("ANALYZE")
    return kinds


# --- the baseline: one query -------------------------------------------------------------------------------


def baseline_query(db: Database) -> Any:
    """The due set of maild/samples/rules/dunning.yaml at NOW (time zone UTC), written by hand."""
    i = Invoice.__table__
    return select(i).where(i.c.status == "open", i.c.amount - i.c.paid_amount + i.c.late_fees > 0, or_(
        and_(i.c.due_on <= TODAY + 3 * D, i.c.due_on > TODAY, i.c.dunning_level == 0),
        and_(i.c.due_on <= TODAY - 7 * D, i.c.due_on > TODAY - 21 * D, i.c.dunning_level < 1),
        and_(i.c.due_on <= TODAY - 21 * D, i.c.due_on > TODAY - 35 * D, i.c.dunning_level < 2),
        and_(i.c.due_on <= TODAY - 35 * D, i.c.dunning_level < 3),
        and_(i.c.last_dunned_at <= NOW - 14 * D, i.c.dunning_level == 3, i.c.dunning_repeats < 3),
    )).order_by(i.c.id)


def run_baseline(db: Database) -> tuple[float, set[int]]:
    query = baseline_query(db)
    start = time.perf_counter()
    with db.engine.connect() as conn:
        rows = conn.execute(query).all()
    return time.perf_counter() - start, {row.id for row in rows}


def run_sweep(engine: RulesEngine) -> tuple[float, set[int], int]:
    """One sweep of a running engine (as the daemon keeps it: rules compiled once)."""
    engine.planned = []
    start = time.perf_counter()
    engine.sweep()
    elapsed = time.perf_counter() - start
    due = {int(p.subject.split(":")[1]) for p in engine.planned if p.action == "send" and p.status == "planned"}
    return elapsed, due, len(engine.planned)


def db_only(ruleset: RuleSet) -> RuleSet:
    rules = tuple(dataclasses.replace(rule, actions=tuple(a for a in rule.actions if a.name != "send"))
                  for rule in ruleset.rules)
    return dataclasses.replace(ruleset, rules=tuple(r for r in rules if r.actions))


# --- one size ----------------------------------------------------------------------------------------------


def measure(size: int, args: argparse.Namespace, workdir: Path, ruleset: RuleSet) -> dict[str, Any]:
    url, cleanup = scratch_database(args.database, workdir, size)
    db = Database(url)
    try:
        db.upgrade()
        log(f"[{size:,}] filling the database ...")
        started = time.perf_counter()
        kinds = fill(db, size, args.seed)
        log(f"[{size:,}] filled in {time.perf_counter() - started:.1f}s: {kinds}")
        config = Config.model_validate({"database": {"url": url}, "base_dir": workdir,
                                        "matching": {"own_domains": [OWN_DOMAIN]},
                                        "rules": {"timezone": "UTC"}, "tracking": {"enabled": False}})
        simulator = RulesEngine(config, db, ruleset, clock=lambda: NOW, simulate=True)
        run_sweep(simulator)  # warm-up: imports, compiled expressions, caches of the database
        run_baseline(db)
        sweeps, baselines = [], []
        due = base_due = set()
        planned = 0
        for round_ in range(args.rounds):
            seconds, due, planned = run_sweep(simulator)
            sweeps.append(seconds)
            base_seconds, base_due = run_baseline(db)
            baselines.append(base_seconds)
            log(f"[{size:,}] round {round_ + 1}: sweep {seconds * 1000:.0f} ms ({len(due)} due, {planned} planned "
                f"actions), baseline {base_seconds * 1000:.0f} ms ({len(base_due)} due)")
        assert due == base_due, f"due sets differ: only sweep {sorted(due - base_due)[:10]}, " \
                                f"only baseline {sorted(base_due - due)[:10]}"
        sweep_s, base_s = min(sweeps), min(baselines)
        engine = RulesEngine(config, db, db_only(ruleset), clock=lambda: NOW)
        started = time.perf_counter()
        actions = engine.sweep()
        real_s = time.perf_counter() - started
        log(f"[{size:,}] real DB-only sweep: {actions} actions in {real_s * 1000:.0f} ms")
        return {"invoices": size, "due": len(due), "planned_actions": planned, "sweep_s": round(sweep_s, 4),
                "baseline_s": round(base_s, 4), "rate": round(size / sweep_s), "baseline_rate": round(size / base_s),
                "ratio": round(base_s / sweep_s, 3), "per_invoice_us": round(sweep_s / size * 1e6, 3),
                "real_sweep_s": round(real_s, 3), "real_actions": actions}
    finally:
        db.dispose()
        cleanup()


def scratch_database(admin_url: str | None, workdir: Path, size: int) -> tuple[str, Any]:
    if not admin_url:
        path = workdir / f"rules-{size}.db"
        return f"sqlite:///{path}", lambda: path.unlink(missing_ok=True)
    import psycopg

    name = f"maild_bench_rules_{uuid.uuid4().hex[:8]}"
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return plain.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="invoice counts, comma-separated (last = headline)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database", help="a PostgreSQL URL to create scratch databases with (default: SQLite)")
    parser.add_argument("--rules", type=Path, default=ROOT / "maild" / "samples" / "rules")
    args = parser.parse_args()
    ruleset = load_rules(args.rules, timezone="UTC")
    ruleset = dataclasses.replace(ruleset, rules=tuple(r for r in ruleset.rules if r.name.startswith("dunning")))
    log(f"rules: {', '.join(r.name for r in ruleset.rules)}; database: {args.database or 'SQLite'}")
    results = []
    with tempfile.TemporaryDirectory(prefix="maild-bench-rules-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            results.append(measure(size, args, Path(tmp), ruleset))
    head = results[-1]
    summary = {"database": "postgresql" if args.database else "sqlite", "rate": head["rate"],
               "baseline_rate": head["baseline_rate"], "ratio": head["ratio"], "target_ratio": 0.5,
               "sizes": results}
    if len(results) > 1:
        summary["linearity"] = round(results[-1]["per_invoice_us"] / results[0]["per_invoice_us"], 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
