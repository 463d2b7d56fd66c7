"""The audit log: every change a person makes (web, API, CLI) with before and after, in the change's transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from maild.clock import as_utc, utcnow
from maild.services.actor import Actor
from maild.store.db import Database
from maild.store.models import AuditEntry

_audit = AuditEntry.__table__


def record(conn: Connection, actor: Actor, action: str, target: str, *, before: Any = None,
           after: Any = None) -> None:
    """Append one entry in the caller's transaction: it commits (or rolls back) with the change itself."""
    conn.execute(_audit.insert().values(at=utcnow(), actor=actor.name, via=actor.via, action=action, target=target,
                                        before=_jsonable(before), after=_jsonable(after)))


@dataclass(frozen=True)
class Entry:
    id: int
    at: datetime
    actor: str
    via: str
    action: str
    target: str
    before: Any
    after: Any

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at.isoformat(), "actor": self.actor, "via": self.via,
                "action": self.action, "target": self.target, "before": self.before, "after": self.after}


def entries(db: Database, *, limit: int = 100, before_id: int | None = None, actor: str | None = None,
            action: str | None = None, target: str | None = None) -> list[Entry]:
    """The newest entries first (older than `before_id`, for paging)."""
    query = select(_audit).order_by(_audit.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(_audit.c.id < before_id)
    if actor:
        query = query.where(_audit.c.actor == actor)
    if action:
        query = query.where(_audit.c.action == action)
    if target:
        query = query.where(_audit.c.target == target)
    with db.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [Entry(r.id, as_utc(r.at) or r.at, r.actor, r.via, r.action, r.target, r.before, r.after) for r in rows]


def _jsonable(value: Any) -> Any:
    return None if value is None else json.loads(json.dumps(value, default=str))
