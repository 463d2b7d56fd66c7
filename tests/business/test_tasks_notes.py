from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from maild.business.notes import add_note
from maild.business.tasks import complete_task, create_task, list_tasks
from maild.clock import as_utc
from maild.store.db import Database
from tests.business.helpers import customer, events


def test_create_task_in_the_callers_transaction_with_its_event(db: Database) -> None:
    tp = customer(db)
    due = datetime(2026, 12, 1, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    with db.engine.begin() as conn:
        task_id = create_task(conn, title="Call about FA-1", thirdparty_id=tp, owner="lena", due_at=due,
                              rule="dunning", reason="level 3 reached")
    [task] = list_tasks(db)
    assert task["id"] == task_id and task["status"] == "open" and task["owner"] == "lena"
    assert task["due_at"] == "2026-12-01T08:00:00+00:00"
    [event] = events(db, "task.created")
    assert event.thirdparty_id == tp
    assert event.data == {"task_id": task_id, "title": "Call about FA-1", "kind": "task", "owner": "lena",
                          "rule": "dunning", "reason": "level 3 reached"}
    assert as_utc(event.occurred_at) is not None and as_utc(event.recorded_at).tzinfo == UTC


def test_a_rolled_back_transaction_leaves_no_task_and_no_event(db: Database) -> None:
    with pytest.raises(RuntimeError), db.engine.begin() as conn:
        create_task(conn, title="lost")
        raise RuntimeError("the rule failed")
    assert list_tasks(db) == [] and events(db, "task.created") == []


def test_task_input_is_checked(db: Database) -> None:
    with db.engine.begin() as conn:
        with pytest.raises(ValueError, match="task title is missing"):
            create_task(conn, title="  ")
        with pytest.raises(ValueError, match="unknown task kind"):
            create_task(conn, title="x", kind="chore")
        with pytest.raises(ValueError, match="timezone"):
            create_task(conn, title="x", due_at=datetime(2026, 1, 1))


def test_list_filters_and_done_once(db: Database) -> None:
    with db.engine.begin() as conn:
        first = create_task(conn, title="a", owner="Lena")
        create_task(conn, title="b", owner="max", kind="agenda")
    assert [t["title"] for t in list_tasks(db, owner="lena")] == ["a"]
    assert complete_task(db, first) is True
    assert complete_task(db, first) is False
    assert [t["title"] for t in list_tasks(db, open_only=True)] == ["b"]
    assert len(events(db, "task.done")) == 1
    with pytest.raises(LookupError, match="no task with id 99"):
        complete_task(db, 99)


def test_add_note_is_an_event(db: Database) -> None:
    tp = customer(db)
    with db.engine.begin() as conn:
        event_id = add_note(conn, thirdparty_id=tp, text=" Prefers calls ", author="lena", rule="r1")
    [event] = events(db, "note.added")
    assert event.id == event_id and event.thirdparty_id == tp
    assert event.data == {"text": "Prefers calls", "author": "lena", "rule": "r1"}
    with db.engine.begin() as conn:
        with pytest.raises(LookupError):
            add_note(conn, thirdparty_id=tp + 100, text="x")
        with pytest.raises(ValueError, match="note is missing"):
            add_note(conn, thirdparty_id=tp, text="")
