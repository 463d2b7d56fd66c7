"""The helper functions of expressions, on the engine's clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from maild.directory.service import add_contact
from maild.rules.context import Clock, Directory, OwnMail, Replies, Scope, helpers, wrote_to
from maild.store.db import Database
from tests.rules.test_engine_support import customer, inbound_mail, make_config

NOW = datetime(2026, 11, 27, 22, 30, tzinfo=UTC)  # Friday 23:30 in Berlin


def test_time_helpers_use_the_clock_and_the_rules_time_zone(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db, rules={"business_hours": {"days": ["mon", "fri"], "start": "08:00",
                                                                 "end": "18:00"}})
    clock = Clock.of(config, NOW)
    assert clock.today == date(2026, 11, 27)
    with db.engine.connect() as conn:
        fn = helpers(Scope(clock, conn, OwnMail.from_config(config), Replies(OwnMail.from_config(config)),
                           Directory(), invoice={"due_on": date(2026, 11, 20), "amount": Decimal("100.00"),
                                                 "paid_amount": Decimal("30.00"), "late_fees": Decimal("5.00")}))
        assert fn["days_since"](date(2026, 11, 20)) == 7
        assert fn["days_until"](date(2026, 12, 1)) == 4
        assert fn["days_since"](NOW - timedelta(days=2, hours=23)) == 2
        assert fn["days_since"](NOW + timedelta(hours=1)) == -1
        assert fn["days_overdue"]() == 7
        assert fn["amount_due"]() == Decimal("75.00")
        assert fn["duration"]("1d12h") == timedelta(days=1, hours=12)
        assert fn["business_hours"]() is False  # 23:30
        assert helpers(Scope(Clock.of(config, NOW.replace(hour=9)), conn, OwnMail.from_config(config),
                             Replies(OwnMail.from_config(config)), Directory()))["business_hours"]() is True
        assert helpers(Scope(Clock.of(config, NOW + timedelta(days=1, hours=-13)), conn, OwnMail.from_config(config),
                             Replies(OwnMail.from_config(config)), Directory()))["business_hours"]() is False  # Sat


def test_directory_helpers(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, anna = customer(db, tags=("VIP",))
    accounting = add_contact(db, thirdparty_id=tp, name="Buchhaltung", role="Accounting",
                             addresses=["buha@mueller.example"])
    own = OwnMail.from_config(config)
    inbound_mail(db, tp, "anna@mueller.example", NOW - timedelta(days=3))
    inbound_mail(db, tp, "billing@ourco.example", NOW - timedelta(days=1))  # ours: not a reply
    with db.engine.connect() as conn:
        directory, replies = Directory(), Replies(own)
        directory.load(conn, [tp])
        scope = Scope(Clock.of(config, NOW), conn, own, replies, directory, thirdparty=directory.thirdparty(tp))
        fn = helpers(scope)
        assert fn["has_tag"]("vip") and not fn["has_tag"]("gold")
        assert fn["contact_with_role"]("accounting")["id"] == accounting
        assert fn["contact_with_role"]("sales") is None
        assert directory.contact(tp)["id"] == anna and directory.thirdparty(tp)["address"] == "anna@mueller.example"
        assert fn["replied_since"](None) is True
        assert fn["replied_since"](NOW - timedelta(days=4)) is True
        assert fn["replied_since"](NOW - timedelta(days=2)) is False
        assert fn["replied_since"](date(2026, 11, 24)) is True  # a date: from its local midnight
        assert not wrote_to(conn, own, "anna@mueller.example", None)
        assert fn["wrote_to"]([], None) is False
