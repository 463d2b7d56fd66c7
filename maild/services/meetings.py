"""Meetings and tasks changed by people: add or cancel a meeting, finish a task, each audited in its transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from maild.business import meetings
from maild.business.tasks import complete_task_in
from maild.services import audit
from maild.services.actor import Actor
from maild.store.db import Database
from maild.store.models import Meeting, Task

_meet, _tasks = Meeting.__table__, Task.__table__
_SHOWN = ("uid", "subject", "start_at", "end_at", "thirdparty_id", "location", "owner", "status", "next_steps")


def add_meeting(db: Database, actor: Actor, own: meetings.OwnMail, *, subject: str, start_at: datetime,
                end_at: datetime, thirdparty_id: int | None = None, location: str = "",
                attendees: Iterable[str] = (), owner: str | None = None, next_steps: Iterable[str] = ()) -> int:
    """A meeting entered by hand (maild.business.meetings.add_meeting); audited as `meeting.create`."""
    actor.require("staff")
    with db.engine.begin() as conn:
        meeting_id = meetings.add_meeting_in(conn, own, subject=subject, start_at=start_at, end_at=end_at,
                                             thirdparty_id=thirdparty_id, location=location, attendees=attendees,
                                             owner=owner, next_steps=next_steps)
        audit.record(conn, actor, "meeting.create", f"meeting:{meeting_id}",
                     after={**_meeting(conn, meeting_id), "attendees": list(attendees)})
    return meeting_id


def cancel_meeting(db: Database, actor: Actor, ref: str) -> bool:
    """Cancel a meeting by id or uid; audited as `meeting.cancel` when it was not cancelled already."""
    actor.require("staff")
    with db.engine.begin() as conn:
        row = meetings.find_meeting(conn, ref)
        before = _meeting(conn, row.id)
        cancelled = meetings.cancel_meeting_in(conn, row.uid).action == "cancelled"
        if cancelled:
            audit.record(conn, actor, "meeting.cancel", f"meeting:{row.id}", before=before,
                         after=_meeting(conn, row.id))
    return cancelled


def complete_task(db: Database, actor: Actor, task_id: int) -> bool:
    """Mark a task done (maild.business.tasks.complete_task); audited as `task.done` when it was open."""
    actor.require("staff")
    with db.engine.begin() as conn:
        before = conn.execute(select(_tasks.c.status, _tasks.c.title).where(_tasks.c.id == task_id)).first()
        done = complete_task_in(conn, task_id)
        if done and before is not None:
            audit.record(conn, actor, "task.done", f"task:{task_id}",
                         before={"status": before.status, "title": before.title},
                         after={"status": "done", "title": before.title})
    return done


def _meeting(conn: Connection, meeting_id: int) -> dict[str, Any]:
    row = conn.execute(select(_meet).where(_meet.c.id == meeting_id)).one()
    return {name: getattr(row, name, None) for name in _SHOWN}
