"""Loop protection for rule mail: a rule reacting to an event (a mail that came in...) sends no more mail to an
address that rules already sent `machine_mail.rule_mail_daily_cap` mails in the last 24 hours; what the cap holds
back is a `rule.held_back` event on the timeline. (Sweeps send once per record and level: the ledger bounds them.)"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Text, case, cast, exists, func, or_, select

from maild.clock import utcnow
from maild.matchers.normalize import normalize_address
from maild.store.db import Database
from maild.store.models import Event, OutboxMessage, RuleLedger

_ob, _led, _ev = OutboxMessage.__table__, RuleLedger.__table__, Event.__table__
DAY = timedelta(days=1)


class DailyCap:
    """The rule mail each address got in the last 24 hours: loaded with one statement for all the addresses of a
    batch (those not loaded before), then counted on in memory as the batch queues more."""

    def __init__(self, db: Database, cap: int) -> None:
        self.db = db
        self.cap = cap
        self._keys: dict[str, set[str]] = {}  # normalized address -> outbox keys of the rule mail it got

    def held_back(self, addresses: list[str], keys: list[str]) -> list[bool]:
        """For each address, whether rules already queued `cap` mails to it in the last 24 hours; its own key
        (`keys`, one per address: a mail queued under it before a crash is the same mail) does not count."""
        wanted = [normalize_address(address) for address in addresses]
        self._load({address for address in wanted if address is not None} - self._keys.keys())
        return [address is not None and len(self._keys[address] - {key}) >= self.cap
                for address, key in zip(wanted, keys, strict=True)]

    def queued(self, address: str, key: str) -> None:
        """Count a mail this batch queued (or found queued) to `address` under `key`."""
        wanted = normalize_address(address)
        if wanted is not None:
            self._keys.setdefault(wanted, set()).add(key)

    def _load(self, addresses: set[str]) -> None:
        if not addresses:
            return
        for address in addresses:
            self._keys[address] = set()
        query = (select(_ob.c.idempotency_key, _ob.c.recipients)
                 .where(_ob.c.created_at > utcnow() - DAY, _ob.c.status != "cancelled",
                        exists().where(_led.c.action == "send", _led.c.key == _ledger_key(self.db))))
        domains = {address.rpartition("@")[2] for address in addresses}
        if all(domain.isascii() for domain in domains):  # else every rule mail of the day is read
            recipients = func.lower(cast(_ob.c.recipients, Text))
            query = query.where(or_(*(recipients.like(_domain_pattern(domain), escape="\\")
                                      for domain in sorted(domains))))
        with self.db.engine.connect() as conn:
            for key, to in conn.execute(query):
                for address in {normalize_address(a) for a in to or []} & addresses:
                    self._keys[address].add(key)


def _ledger_key(db: Database) -> Any:
    """The ledger key an outbox key was queued under: the key itself, or what comes before the first `/` (a send to
    several recipients queues `KEY/address` for each)."""
    key = _ob.c.idempotency_key
    if db.is_sqlite:
        slash = func.instr(key, "/")
        return case((slash > 0, func.substr(key, 1, slash - 1)), else_=key)
    return func.split_part(key, "/", 1)


def _domain_pattern(domain: str) -> str:
    return "%@" + domain.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def hold_back(db: Database, address: str, data: dict[str, Any], key: str, cap: int) -> None:
    now = utcnow()
    with db.engine.begin() as conn:
        conn.execute(_ev.insert().values(
            type="rule.held_back", occurred_at=now, recorded_at=now, thirdparty_id=data.get("thirdparty_id"),
            message_id=data.get("message_id"),
            data={"to": address, "template": data.get("template"), "key": key, "cap": cap,
                  "reason": f"rules already sent {cap} mails to {address} in the last 24 hours "
                            f"(machine_mail.rule_mail_daily_cap)"}))
