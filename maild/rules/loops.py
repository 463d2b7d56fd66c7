"""Loop protection for rule mail: a rule reacting to an event (a mail that came in...) sends no more mail to an
address that rules already sent `machine_mail.rule_mail_daily_cap` mails in the last 24 hours; what the cap holds
back is a `rule.held_back` event on the timeline. (Sweeps send once per record and level: the ledger bounds them.)"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Text, cast, func, select

from maild.clock import utcnow
from maild.matchers.normalize import normalize_address
from maild.store.db import Database
from maild.store.models import Event, OutboxMessage, RuleLedger

_ob, _led, _ev = OutboxMessage.__table__, RuleLedger.__table__, Event.__table__
DAY = timedelta(days=1)


def over_daily_cap(db: Database, address: str, cap: int, key: str) -> bool:
    """Rules already queued `cap` mails to `address` in the last 24 hours (a mail under `key` itself, queued
    before a crash, does not count: sending it again is the same mail)."""
    wanted = normalize_address(address)
    if wanted is None:
        return False
    since = utcnow() - DAY
    domain = wanted.rpartition("@")[2]
    with db.engine.connect() as conn:
        query = select(_ob.c.idempotency_key, _ob.c.recipients).where(_ob.c.created_at > since,
                                                                      _ob.c.status != "cancelled")
        if domain.isascii():
            pattern = "%@" + domain.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            query = query.where(func.lower(cast(_ob.c.recipients, Text)).like(pattern, escape="\\"))
        mails = [(k, r) for k, r in conn.execute(query)
                 if k != key and any(normalize_address(a) == wanted for a in r or [])]
        if len(mails) < cap:
            return False
        keys = {k.split("/", 1)[0] for k, _ in mails}
        by_rules = set(conn.execute(select(_led.c.key).where(_led.c.key.in_(sorted(keys)), _led.c.action == "send"))
                       .scalars())
    return sum(1 for k, _ in mails if k.split("/", 1)[0] in by_rules) >= cap


def hold_back(db: Database, address: str, data: dict[str, Any], key: str, cap: int) -> None:
    now = utcnow()
    with db.engine.begin() as conn:
        conn.execute(_ev.insert().values(
            type="rule.held_back", occurred_at=now, recorded_at=now, thirdparty_id=data.get("thirdparty_id"),
            message_id=data.get("message_id"),
            data={"to": address, "template": data.get("template"), "key": key, "cap": cap,
                  "reason": f"rules already sent {cap} mails to {address} in the last 24 hours "
                            f"(machine_mail.rule_mail_daily_cap)"}))
