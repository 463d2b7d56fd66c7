"""What the sweep does to be fast gives what the plain path gives: the swept invoice view, the SQLite table scan
instead of an index walk, ids bound as one parameter, text templates without Jinja, plans made once per pass."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from maild.business.invoices import invoice_context, upsert_invoice
from maild.rules import ledger
from maild.rules.actions import same_for_every_subject
from maild.rules.context import Clock, Evaluator, _utc, invoice_view, swept_invoice_view
from maild.rules.expressions import ExpressionError
from maild.rules.sweep import SCAN_SHARE, candidates, compile_rule, prefer_scan
from maild.store.db import Database
from maild.store.models import Invoice, RuleLedger
from tests.rules.test_engine_support import (
    customer,
    invoice,
    make_config,
    on_sweep,
    rule,
    send,
    set_,
    text,
)

D = timedelta(days=1)
NOW = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
_inv = Invoice.__table__


def test_swept_invoice_view_is_the_invoice_view(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, contact = customer(db)
    plain = invoice(db, tp, "V-1", date(2026, 10, 1), amount="250.00", dunning_level=2, dunning_repeats=1,
                    last_dunned_at=datetime(2026, 11, 2, 8, 15, 30, 123456, tzinfo=UTC), late_fees="7.50")
    invoice(db, tp, "V-2", date(2026, 10, 2), paid_at=datetime(2026, 11, 3, tzinfo=UTC), status="paid")
    with_lines, _ = upsert_invoice(db, ref="V-3", thirdparty_id=tp, contact_id=contact, issued_on=date(2026, 9, 20),
                                   due_on=date(2026, 10, 3), lines=[{"description": "Work", "quantity": "2",
                                                                     "unit_price": "100.00", "vat_rate": "19"}])
    r = rule("r", on_sweep("invoice", "due_on", 7 * D), [send()])
    with db.engine.connect() as conn:
        full = {row.id: row for row in conn.execute(select(_inv))}
        for text_times in (False, True):
            swept = conn.execute(candidates(r, compile_rule(r), Clock.of(config, NOW), text_times=text_times)).all()
            assert [row.id for row in swept] == sorted(full)
            for row in swept:
                view = swept_invoice_view(conn, row)
                assert view == invoice_view(conn, full[row.id])
                assert view == {**invoice_context(conn, full[row.id]), "created_at": view["created_at"]}
                assert view["created_at"].tzinfo is not None
        by_id = {row.id: swept_invoice_view(conn, row) for row in swept}
    assert by_id[with_lines]["lines"] and by_id[with_lines]["total_vat"] == 38
    assert by_id[plain]["last_dunned_at"] == datetime(2026, 11, 2, 8, 15, 30, 123456, tzinfo=UTC)
    assert by_id[plain]["amount_due"] == 257.5


def test_datetimes_read_as_text_are_utc_as_sqlalchemy_and_as_utc_make_them() -> None:
    assert _utc("2026-11-02 08:15:30.123456") == datetime(2026, 11, 2, 8, 15, 30, 123456, tzinfo=UTC)
    assert _utc("2026-11-02 10:15:30+02:00") == datetime(2026, 11, 2, 8, 15, 30, tzinfo=UTC)
    assert _utc(datetime(2026, 11, 2, 8)) == datetime(2026, 11, 2, 8, tzinfo=UTC)
    assert _utc(None) is None


def test_a_window_no_index_serves_scans_the_table_on_sqlite_when_that_is_cheaper(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    for n in range(40):
        invoice(db, tp, f"S-{n}", date(2026, 9, 1) + n * D, status="open" if n % 3 else "paid",
                dunning_level=3 if n % 2 else 1, last_dunned_at=NOW - (n % 20) * D)
    repeat = rule("repeat", on_sweep("invoice", "issued_on", 14 * D), [send()],
                  conditions=('invoice.status == "open"', "invoice.dunning_level == 3"))
    by_due = rule("level", on_sweep("invoice", "due_on", 7 * D), [send()], conditions=('invoice.status == "open"',))
    compiled = compile_rule(repeat)
    assert compiled.walk is not None and compile_rule(by_due).walk is None  # (status, due_on) serves due_on
    scan_sql = str(candidates(repeat, compiled, Clock.of(config, NOW), scan=True).compile(dialect=sqlite.dialect()))
    assert "+invoices.status = " in scan_sql
    pg_sql = str(candidates(repeat, compiled, Clock.of(config, NOW), scan=True).compile(dialect=postgresql.dialect()))
    assert "+invoices" not in pg_sql
    with db.engine.connect() as conn:
        walked = [row.id for row in conn.execute(candidates(repeat, compiled, Clock.of(config, NOW)))]
        scanned = [row.id for row in conn.execute(candidates(repeat, compiled, Clock.of(config, NOW), scan=True))]
        assert walked == scanned and walked
        # two thirds of the invoices are open: SQLite scans; PostgreSQL has statistics and decides alone
        assert prefer_scan(conn, repeat, compiled) is db.is_sqlite
        assert not prefer_scan(conn, by_due, compile_rule(by_due))
    with db.engine.begin() as conn:  # now few are open: walking the index is cheaper
        conn.execute(_inv.update().where(_inv.c.id > 40 // SCAN_SHARE // 2).values(status="paid"))
    with db.engine.connect() as conn:
        assert not prefer_scan(conn, repeat, compiled)


def test_a_window_an_index_serves_keeps_sqlite_on_that_index(db: Database, tmp_path: Path) -> None:
    """`dunning_level < 3` could lead SQLite (no statistics) to the (status, dunning_level, ...) index, reading
    every open invoice below level 3; the window's own index (status, due_on) reads only the long overdue."""
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    for n in range(30):
        invoice(db, tp, f"P-{n}", date(2026, 8, 1) + 4 * n * D, status="open" if n % 4 else "paid",
                dunning_level=n % 4)
    level3 = rule("level-3", on_sweep("invoice", "due_on", 35 * D), [send()],
                  conditions=('invoice.status == "open"', "invoice.dunning_level < 3"))
    compiled = compile_rule(level3)
    assert compiled.walk is None and compiled.pinned
    clock = Clock.of(config, NOW)
    pinned = candidates(level3, compiled, clock)
    sql = str(pinned.compile(dialect=sqlite.dialect()))
    assert "+invoices.dunning_level < " in sql and "+invoices.status" not in sql
    assert "+invoices" not in str(pinned.compile(dialect=postgresql.dialect()))
    plain = candidates(level3, dataclasses.replace(compiled, pinned=()), clock)
    with db.engine.connect() as conn:
        got = [row.id for row in conn.execute(pinned)]
        assert got and got == [row.id for row in conn.execute(plain)]
        if db.is_sqlite:
            compiled_sql = pinned.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled_sql}"))
            assert "ix_invoices_status_due_on" in plan, plan


def test_ledger_statuses_of_thousands_of_subjects_in_one_query(db: Database) -> None:
    with db.engine.begin() as conn:
        for n in (5, 1500, 2999):
            conn.execute(RuleLedger.__table__.insert().values(
                key=f"r:invoice:{n}:0", rule="r", subject=f"invoice:{n}", action="send", step=0, status="done",
                detail={}, created_at=NOW))
        conn.execute(RuleLedger.__table__.insert().values(
            key="other:invoice:5:0", rule="other", subject="invoice:5", action="send", step=0, status="failed",
            detail={}, created_at=NOW))
    with db.engine.connect() as conn:
        found = ledger.statuses(conn, "r", [f"invoice:{n}" for n in range(3000)])
        assert found == {"r:invoice:5:0": "done", "r:invoice:1500:0": "done", "r:invoice:2999:0": "done"}
        assert ledger.statuses(conn, "r", []) == {}


@pytest.mark.parametrize("source", [
    "Invoice {{ invoice.ref }} is overdue: call {{ thirdparty.name }}",
    "{{ invoice.due_on }} {{ invoice.amount }} {{ invoice.none }} {{ n + 1 }} {{ [1, 'a'] }} {{ not n }}\n",
    "plain text\n\n", "{{ invoice.items }}", "{{ invoice.missing }}", "{{ thirdparty.name|upper }}",
    "{% if n %}yes{% endif %}", "{{ amount_due() }} {{ invoice.ref == 'R-1' }}",
])
def test_text_templates_render_as_jinja_renders_them(source: str) -> None:
    names = {"invoice": {"ref": "R-1", "due_on": date(2026, 1, 2), "amount": 1.5, "none": None},
             "thirdparty": {"name": "Müller"}, "n": 3, "amount_due": lambda: 42}
    template = text(source)
    try:
        expected: object = template.render(names)
    except ExpressionError as exc:
        expected = str(exc)
    try:
        got: object = Evaluator().text(template, names)
    except ExpressionError as exc:
        got = str(exc)
    assert got == expected


def test_only_a_set_of_clock_values_is_planned_once_per_pass() -> None:
    assert same_for_every_subject(rule("a", on_sweep("invoice", "due_on", D), [
        set_(invoice__dunning_level="1", invoice__last_dunned_at="now")]).actions[0])
    assert not same_for_every_subject(rule("b", on_sweep("invoice", "due_on", D), [
        set_(invoice__dunning_repeats="invoice.dunning_repeats + 1")]).actions[0])
    assert not same_for_every_subject(rule("c", on_sweep("invoice", "due_on", D), [send()]).actions[0])
