"""Tasks (something a person must do) and agenda entries, created by hand or by a rule.

`create_task` works in the caller's transaction, so a rule's ledger row and its task commit together.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from maild.business.timeline import append_event
from maild.clock import as_utc, utcnow
from maild.directory import fields
from maild.store.db import Database
from maild.store.models import Task

_tasks = Task.__table__
KINDS = ("task", "agenda")
STATUSES = ("open", "done")


def create_task(conn: Connection, *, title: str, kind: str = "task", thirdparty_id: int | None = None,
                owner: str | None = None, due_at: datetime | None = None, invoice_id: int | None = None,
                meeting_id: int | None = None, message_id: int | None = None, rule: str | None = None,
                reason: str = "") -> int:
    """Insert an open task and its `task.created` event; returns the task's id."""
    clean_title = fields.text(title, "task title", 10_000, required=True)
    clean_kind = (kind or "").strip().lower()
    if clean_kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r} (expected one of: {', '.join(KINDS)})")
    clean_owner = fields.text(owner, "owner", 200)
    clean_rule = fields.text(rule, "rule", 200)
    if due_at is not None and due_at.tzinfo is None:
        raise ValueError("a task's due time must carry a timezone")
    now = utcnow()
    task_id = int(conn.execute(_tasks.insert().returning(_tasks.c.id).values(
        kind=clean_kind, title=clean_title, thirdparty_id=thirdparty_id, owner=clean_owner, due_at=as_utc(due_at),
        status="open", invoice_id=invoice_id, meeting_id=meeting_id, message_id=message_id, rule=clean_rule,
        created_at=now)).scalar_one())
    data: dict[str, Any] = {"task_id": task_id, "title": clean_title, "kind": clean_kind, "owner": clean_owner,
                            "rule": clean_rule}
    if reason:
        data["reason"] = reason
    append_event(conn, "task.created", thirdparty_id=thirdparty_id, message_id=message_id, data=data,
                 occurred_at=now)
    return task_id


def list_tasks(db: Database, *, owner: str | None = None, open_only: bool = False,
               thirdparty_id: int | None = None) -> list[dict[str, Any]]:
    """Tasks, oldest first; optionally only one owner's (case-insensitive), only open ones, one third party's."""
    query = select(_tasks).order_by(_tasks.c.id)
    if open_only:
        query = query.where(_tasks.c.status == "open")
    if thirdparty_id is not None:
        query = query.where(_tasks.c.thirdparty_id == thirdparty_id)
    with db.engine.connect() as conn:
        rows = conn.execute(query).all()
    wanted = owner.strip().casefold() if owner else None
    return [task_fields(r) for r in rows if wanted is None or (r.owner or "").casefold() == wanted]


def complete_task(db: Database, task_id: int) -> bool:
    """Mark a task done (`task.done` event). False when it already was done; LookupError when unknown."""
    with db.engine.begin() as conn:
        return complete_task_in(conn, task_id)


def complete_task_in(conn: Connection, task_id: int) -> bool:
    """`complete_task` in the caller's transaction."""
    now = utcnow()
    row = conn.execute(select(_tasks).where(_tasks.c.id == task_id)).first()
    if row is None:
        raise LookupError(f"no task with id {task_id}")
    changed = conn.execute(update(_tasks).where(_tasks.c.id == task_id, _tasks.c.status != "done")
                           .values(status="done", done_at=now)).rowcount
    if not changed:
        return False
    append_event(conn, "task.done", thirdparty_id=row.thirdparty_id, message_id=row.message_id,
                 data={"task_id": task_id, "title": row.title, "kind": row.kind, "owner": row.owner},
                 occurred_at=now)
    return True


def task_fields(row: Any) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        utc = as_utc(value)
        return utc.isoformat() if utc is not None else None

    return {"id": row.id, "kind": row.kind, "title": row.title, "status": row.status, "owner": row.owner,
            "thirdparty_id": row.thirdparty_id, "due_at": iso(row.due_at), "invoice_id": row.invoice_id,
            "meeting_id": row.meeting_id, "message_id": row.message_id, "rule": row.rule,
            "created_at": iso(row.created_at), "done_at": iso(row.done_at)}
