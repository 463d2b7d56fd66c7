"""Sweep candidates: the date window in the rules' time zone, and SQL pushdown that gives what Python gives."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from maild.rules.context import Clock
from maild.rules.engine import RulesEngine
from maild.rules.expressions import Expression
from maild.rules.model import Position
from maild.rules.sweep import TABLES, candidates, compile_rule, translate
from maild.store.db import Database
from maild.store.models import Invoice, Meeting, OutboxMessage
from tests.rules.test_engine_support import (
    FakeClock,
    customer,
    invoice,
    ledger_rows,
    make_config,
    on_sweep,
    outbox_rows,
    rule,
    rules,
    send,
)

D = timedelta(days=1)
_inv = Invoice.__table__

CONDITIONS = [
    'invoice.status == "open"', 'invoice.status != "paid"', '"open" == invoice.status',
    'invoice.status in ["open", "paused"]', 'invoice.status not in ("paid",)', "invoice.dunning_level < 2",
    "invoice.dunning_level >= 1", "2 > invoice.dunning_level",
    "invoice.dunning_level == 3 and invoice.dunning_repeats < 3",
    'invoice.dunning_level == 0 or invoice.status == "paused"', 'not invoice.status == "open"',
    'invoice.dunning_level == "1"', "invoice.dunning_level == true", 'invoice.status < "p"',
    'invoice.status == "open" and amount_due() > 50', "invoice.currency == 'EUR'",
]


def test_pushed_conditions_select_what_python_selects(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    rng = random.Random(5)
    base = date(2026, 10, 1)
    for n in range(60):
        invoice(db, tp, f"R-{n}", base + rng.randrange(60) * D, amount=str(rng.choice([20, 80, 200])),
                status=rng.choice(["open", "open", "paid", "paused", "disputed"]), dunning_level=rng.randrange(4),
                dunning_repeats=rng.randrange(4))
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    clock = Clock.of(config, now)
    for source in CONDITIONS:
        r = rule("r", on_sweep("invoice", "due_on", 7 * D, 30 * D), [send()], conditions=(source,))
        compiled = compile_rule(r)
        with db.engine.connect() as conn:
            pushed = {row.id for row in conn.execute(candidates(r, compiled, clock))}
            window_only = list(conn.execute(select(_inv).where(
                _inv.c.due_on <= date(2026, 11, 13), _inv.c.due_on > date(2026, 10, 21))))
        engine = RulesEngine(config, db, rules(r), clock=lambda: now, simulate=True)
        expected = set()
        for row in window_only:
            names = {"invoice": {c: getattr(row, c) for c in row._fields}, "amount_due": lambda row=row: row.amount}
            if Expression(source, Position("t", 1, 1)).evaluate(names):
                expected.add(row.id)
        if compiled.in_python[0]:
            assert pushed >= expected, source  # a necessary condition at most: Python decides
        else:
            assert pushed == expected, source
        planned = {p.subject for p in engine.simulate(now) if p.action == "send"}
        assert planned == {f"invoice:{i}" for i in expected}, source


def test_only_safe_comparisons_are_translated() -> None:
    table = TABLES["invoice"]
    whole = {s: translate(s, "invoice", table)[1] for s in CONDITIONS}
    assert whole['invoice.status == "open"'] and whole["invoice.dunning_level < 2"]
    assert whole["invoice.dunning_level == 3 and invoice.dunning_repeats < 3"]
    assert not whole['invoice.dunning_level == "1"']  # a type Python would never find equal
    assert not whole["invoice.dunning_level == true"]
    assert not whole['invoice.status < "p"']  # text order is the database's collation
    assert not whole['invoice.status == "open" and amount_due() > 50']
    clause, full = translate('invoice.status == "open" and amount_due() > 50', "invoice", table)
    assert clause is not None and not full
    assert translate("invoice.last_dunned_at == none", "invoice", table) == (None, False)  # nullable column
    assert translate("thirdparty.name == 'x'", "invoice", table) == (None, False)


def test_date_offsets_count_calendar_days_in_the_rules_time_zone(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    due = date(2026, 3, 24)  # the clocks change in Berlin on 2026-03-29
    invoice(db, tp, "TZ-1", due)
    r = rule("r", on_sweep("invoice", "due_on", 7 * D, 8 * D), [send()])
    compiled = compile_rule(r)

    def due_at(now: datetime) -> bool:
        with db.engine.connect() as conn:
            return bool(list(conn.execute(candidates(r, compiled, Clock.of(config, now)))))

    assert not due_at(datetime(2026, 3, 30, 21, 59, tzinfo=UTC))  # 23:59 CEST on the 30th
    assert due_at(datetime(2026, 3, 30, 22, 0, tzinfo=UTC))  # midnight CEST: the 31st = due + 7
    assert due_at(datetime(2026, 3, 31, 21, 59, tzinfo=UTC))
    assert not due_at(datetime(2026, 3, 31, 22, 0, tzinfo=UTC))  # due + 8: the window closed


def test_meeting_followup_goes_to_external_attendees_unless_we_wrote_since(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    end = datetime(2026, 11, 20, 15, tzinfo=UTC)
    attendees = [{"name": "Anna", "address": "anna@mueller.example", "internal": False, "thirdparty_id": tp},
                 {"name": "Bob", "address": "bob@ourco.example", "internal": True, "thirdparty_id": None},
                 # named by the invitation, not in the directory: recorded, never mailed
                 {"name": "Guest", "address": "guest@elsewhere.example", "internal": False, "thirdparty_id": None}]
    with db.engine.begin() as conn:
        for uid, status in (("m1", "confirmed"), ("m2", "confirmed"), ("m3", "cancelled")):
            conn.execute(Meeting.__table__.insert().values(
                uid=uid, thirdparty_id=tp, subject=uid, start_at=end - timedelta(hours=1), end_at=end,
                attendees=attendees if uid != "m2" else [{**attendees[0], "address": "carl@mueller.example"}],
                status=status, sequence=0, location="", next_steps=[], created_at=end, updated_at=end))
        # after m2 ended, a colleague already wrote to Carl through the outbox
        conn.execute(OutboxMessage.__table__.insert().values(
            idempotency_key="manual-1", status="sent", sender="bob@ourco.example", recipients=["Carl@Mueller.example"],
            subject="minutes", header_message_id="<x@ourco.example>", raw_sha256="0" * 64, size=1,
            created_at=end + timedelta(minutes=30), attempts=0, sent_folder_done=False, transport="default"))
    ruleset = rules(rule("meeting-followup", on_sweep("meeting", "end_at", timedelta(hours=2), 7 * D),
                         [send("followup", to="attendees")],
                         conditions=('meeting.status == "confirmed"', "attendees",
                                     "not wrote_to(attendees, meeting.end_at)")))
    clock = FakeClock(end + timedelta(hours=1, minutes=59))
    engine = RulesEngine(config, db, ruleset, clock=clock)
    assert engine.sweep() == 0
    clock.advance(minutes=1)
    assert engine.sweep() == 1
    assert engine.sweep() == 0
    mails = [m for m in outbox_rows(db) if m.idempotency_key != "manual-1"]
    assert [m.recipients for m in mails] == [["anna@mueller.example"]]
    assert [r.subject for r in ledger_rows(db)] == ["meeting:1"]


def test_a_send_to_all_of_a_meetings_attendees_never_mails_those_outside_the_directory(db: Database,
                                                                                     tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    end = datetime(2026, 11, 20, 15, tzinfo=UTC)
    guests = [{"name": f"Guest {n}", "address": f"guest{n}@elsewhere.example", "internal": False,
               "thirdparty_id": None, "contact_id": None} for n in range(3)]
    with db.engine.begin() as conn:
        conn.execute(Meeting.__table__.insert().values(
            uid="g1", thirdparty_id=tp, subject="g1", start_at=end - timedelta(hours=1), end_at=end, attendees=guests,
            status="confirmed", sequence=0, location="", next_steps=[], created_at=end, updated_at=end))
    ruleset = rules(rule("tell-everyone", on_sweep("meeting", "end_at", timedelta(hours=2), 7 * D),
                         [send("followup", to="meeting.attendees")]))
    engine = RulesEngine(config, db, ruleset, clock=FakeClock(end + timedelta(hours=3)))
    assert engine.sweep() == 0
    assert outbox_rows(db) == []
    [row] = ledger_rows(db)
    assert row.status == "failed"
    assert "gave no recipient (3 attendee(s) not in the directory: rules never mail them)" in str(row.detail)


def test_a_forged_mail_from_one_of_us_does_not_count_as_having_written_to_the_attendees(db: Database,
                                                                                        tmp_path: Path) -> None:
    """`wrote_to` reads our colleagues' mail seen in ingested folders; one whose sender failed authentication
    (someone posing as us) holds back no follow-up."""
    from maild.store.models import Message

    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    end = datetime(2026, 11, 20, 15, tzinfo=UTC)
    anna = {"name": "Anna", "address": "anna@mueller.example", "internal": False, "thirdparty_id": tp}
    with db.engine.begin() as conn:
        conn.execute(Meeting.__table__.insert().values(
            uid="w1", thirdparty_id=tp, subject="w1", start_at=end - timedelta(hours=1), end_at=end, attendees=[anna],
            status="confirmed", sequence=0, location="", next_steps=[], created_at=end, updated_at=end))
        conn.execute(Message.__table__.insert().values(
            raw_sha256="a" * 64, size=1, from_addr="bob@ourco.example", to_addrs=[["Anna", "anna@mueller.example"]],
            cc_addrs=[], reply_to=[], references=[], defects=[], date=end + timedelta(minutes=30), subject="minutes",
            auth="fail", auth_reason="mx.ourco.example: dmarc=fail", ingested_at=end + timedelta(minutes=31)))
    ruleset = rules(rule("meeting-followup", on_sweep("meeting", "end_at", timedelta(hours=2), 7 * D),
                         [send("followup", to="attendees")],
                         conditions=("attendees", "not wrote_to(attendees, meeting.end_at)")))
    engine = RulesEngine(config, db, ruleset, clock=FakeClock(end + timedelta(hours=3)))
    assert engine.sweep() == 1, "the forged mail holds nothing back"
    assert [m.recipients for m in outbox_rows(db)] == [["anna@mueller.example"]]
