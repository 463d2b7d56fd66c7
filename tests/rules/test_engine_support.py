"""Builders shared by the engine, action, sweep and context tests (no tests in here)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select

from maild.business.invoices import upsert_invoice
from maild.business.timeline import append_event
from maild.config import Config, load_config
from maild.directory.service import add_contact, add_thirdparty
from maild.rules.expressions import Expression, TextTemplate
from maild.rules.model import (
    Action,
    ActionSpec,
    EventTrigger,
    Position,
    Rule,
    RuleSet,
    SendAction,
    SetAction,
    StopAction,
    SweepTrigger,
    TaskAction,
    Trigger,
)
from maild.store.db import Database
from maild.store.models import Event, Invoice, Message, MessageMatch, OutboxMessage, RuleLedger

HERE = Position("test.yaml", 1, 1)
ZONE = "Europe/Berlin"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, value: datetime) -> None:
        self.now = value

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def expr(source: str) -> Expression:
    return Expression(source, HERE)


def text(source: str) -> TextTemplate:
    return TextTemplate(source, HERE, "text")


def rule(name: str, trigger: Trigger, actions: list[tuple[str, ActionSpec]], conditions: tuple[str, ...] = (),
         once_per: str | None = None, enabled: bool = True) -> Rule:
    return Rule(name=name, file="test.yaml", position=HERE, trigger=trigger,
                actions=tuple(Action(kind, spec, HERE) for kind, spec in actions),
                conditions=tuple(expr(c) for c in conditions), once_per=expr(once_per) if once_per else None,
                enabled=enabled)


def on_event(*types: str) -> EventTrigger:
    return EventTrigger(tuple(types))


def on_sweep(record: str, date_field: str, offset: timedelta, until: timedelta | None = None) -> SweepTrigger:
    return SweepTrigger(record, date_field, offset, until)  # type: ignore[arg-type]


def rules(*items: Rule) -> RuleSet:
    return RuleSet(rules=tuple(items), files=("test.yaml",), timezone=ZONE)


def send(template: str = "reminder", to: str = "contact", attach: tuple[str, ...] = ()) -> tuple[str, SendAction]:
    return "send", SendAction(template=template, to=expr(to), attach=attach)


def set_(**values: str) -> tuple[str, SetAction]:
    return "set", SetAction(tuple((name.replace("__", "."), expr(value)) for name, value in values.items()))


def stop() -> tuple[str, StopAction]:
    return "stop", StopAction()


def task(title: str, owner: str | None = "owner", due: timedelta | None = None) -> tuple[str, TaskAction]:
    return "task", TaskAction(title=text(title), owner=expr(owner) if owner else None, due=due)


def make_config(home: Path, db: Database, **sections: Any) -> Config:
    """A config file in `home` (file transport, a `reminder` template) as a user would write it."""
    home.mkdir(parents=True, exist_ok=True)
    for name, subject in (("reminder", "Reminder {{ invoice.ref if invoice else '' }}"),
                          ("followup", "Thank you for the meeting"), ("notice", "Hello")):
        folder = home / "templates" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "subject.txt").write_text(subject + "\n")
        (folder / "body.txt").write_text("Dear {{ contact.name or thirdparty.name }},\nplease pay.\n")
    data: dict[str, Any] = {
        "database": {"url": db.url}, "storage": {"blob_dir": "blobs"},
        "outbound": {"sender": "billing@ourco.example", "transport": {"type": "file", "directory": "sent-mail"},
                     "templates_dir": "templates"},
        "tracking": {"enabled": False},
        "matching": {"own_domains": ["ourco.example"]},
        "rules": {"timezone": ZONE},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    path = home / "maild.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(path, environ={})


def customer(db: Database, name: str = "Müller Bau GmbH", owner: str | None = "owner@ourco.example",
             tags: tuple[str, ...] = ()) -> tuple[int, int]:
    tp = add_thirdparty(db, name=name, owner=owner, tags=tags, language="en")
    slug = name.split()[0].lower().replace("ü", "ue")
    contact = add_contact(db, thirdparty_id=tp, name="Anna Becker", addresses=[f"anna@{slug}.example"])
    return tp, contact


def invoice(db: Database, tp: int, ref: str, due_on: date, amount: str = "100.00", **extra: Any) -> int:
    invoice_id, _ = upsert_invoice(db, ref=ref, thirdparty_id=tp, issued_on=due_on - timedelta(days=14),
                                   due_on=due_on, amount=amount)
    if extra:
        with db.engine.begin() as conn:
            conn.execute(Invoice.__table__.update().where(Invoice.__table__.c.id == invoice_id).values(**extra))
    return invoice_id


def inbound_mail(db: Database, tp: int, sender: str, when: datetime, subject: str = "re: invoice",
                 kind: str | None = "human") -> int:
    """A message from the customer, matched to it (as the matching stage records it); classified as `kind` at
    ingest (None: stored before classification existed, and no raw bytes in the blob store)."""
    with db.engine.begin() as conn:
        message_id = conn.execute(Message.__table__.insert().returning(Message.__table__.c.id).values(
            raw_sha256=f"{hash((tp, sender, when)) & 0xFFFFFFFFFFFF:064x}", size=10, from_addr=sender, kind=kind,
            subject=subject, date=when, ingested_at=when, references=[], to_addrs=[], cc_addrs=[], reply_to=[],
            defects=[])).scalar_one()
        conn.execute(MessageMatch.__table__.insert().values(
            message_id=message_id, status="matched", thirdparty_id=tp, matcher="address", confidence=1.0,
            reason="test", verdicts=[], decided_at=when))
    return int(message_id)


def add_event(db: Database, type_: str, thirdparty_id: int | None = None, message_id: int | None = None,
              when: datetime | None = None, **data: Any) -> int:
    with db.engine.begin() as conn:
        return append_event(conn, type_, thirdparty_id=thirdparty_id, message_id=message_id, data=data,
                            occurred_at=when)


def ledger_rows(db: Database, **where: Any) -> list[Any]:
    table = RuleLedger.__table__
    query = select(table).order_by(table.c.id)
    for key, value in where.items():
        query = query.where(table.c[key] == value)
    with db.engine.connect() as conn:
        return list(conn.execute(query))


def events(db: Database, type_: str) -> list[Any]:
    table = Event.__table__
    with db.engine.connect() as conn:
        return list(conn.execute(select(table).where(table.c.type == type_).order_by(table.c.id)))


def outbox_rows(db: Database) -> list[Any]:
    table = OutboxMessage.__table__
    with db.engine.connect() as conn:
        return list(conn.execute(select(table).order_by(table.c.id)))


def count(db: Database, table: Any) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def invoice_row(db: Database, invoice_id: int) -> Any:
    table = Invoice.__table__
    with db.engine.connect() as conn:
        return conn.execute(select(table).where(table.c.id == invoice_id)).one()


def at(day: date, hour: int = 9) -> datetime:
    """09:00 UTC on `day` (10:00 in Berlin)."""
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
