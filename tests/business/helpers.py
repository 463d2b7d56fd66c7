"""Builders shared by the business tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from maild.directory import service
from maild.store.db import Database
from maild.store.models import Event


def customer(db: Database, name: str = "Müller & Söhne KG", external_id: str = "C-1", **kw: Any) -> int:
    return service.add_thirdparty(db, name=name, external_id=external_id, **kw)


def events(db: Database, event_type: str | None = None) -> list[Any]:
    table = Event.__table__
    query = select(table).order_by(table.c.id)
    if event_type is not None:
        query = query.where(table.c.type == event_type)
    with db.engine.connect() as conn:
        return list(conn.execute(query))
