"""The daemon's filing watcher (maild/filing/watcher.py) on SQLite and PostgreSQL: one look wakes just the waiting
workers whose folder has filing to do (a planned move; a refile even under an older UIDVALIDITY), not the others.
End to end, a triage assignment while the worker idles is tests/filing/test_refile.py."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy import update

from maild.filing.runner import folders_with_pending
from maild.filing.watcher import FilingWatcher
from maild.store import checkpoints
from maild.store.checkpoints import FolderRef
from maild.store.db import Database
from maild.store.models import FilingTask, FolderCheckpoint, Location, Message
from maild.wakeup import Wakeup

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _message(db: Database, ref: FolderRef, uidvalidity: int, uid: int) -> tuple[int, int]:
    """A stored message and its location in `ref` (message id, location id)."""
    with db.engine.begin() as conn:
        message = conn.execute(Message.__table__.insert().returning(Message.__table__.c.id).values(
            raw_sha256=hashlib.sha256(f"{ref}{uid}".encode()).hexdigest(), size=10, from_addr="a@b.example",
            subject="s", date=NOW, ingested_at=NOW, references=[], to_addrs=[], cc_addrs=[], reply_to=[],
            defects=[])).scalar_one()
        location = conn.execute(Location.__table__.insert().returning(Location.__table__.c.id).values(
            source_id=ref.source_id, folder=ref.folder, uidvalidity=uidvalidity, uid=uid, key="",
            message_id=message, seen_at=NOW)).scalar_one()
    return int(message), int(location)


def _task(db: Database, ids: tuple[int, int], from_folder: str | None = None) -> int:
    with db.engine.begin() as conn:
        return int(conn.execute(FilingTask.__table__.insert().returning(FilingTask.__table__.c.id).values(
            message_id=ids[0], location_id=ids[1], target_folder="Customers/ACME", from_folder=from_folder,
            action="move", keywords=[], status="pending", attempts=0, created_at=NOW)).scalar_one())


def _folders(db: Database, *names: str) -> list[FolderRef]:
    source = checkpoints.ensure_source(db, "acct", "imap", "acct@imap.example:143")
    refs = [checkpoints.ensure_folder(db, source, "acct", name) for name in names]
    cp = FolderCheckpoint.__table__
    with db.engine.begin() as conn:
        conn.execute(update(cp).values(uidvalidity=7))
    return refs


def test_one_look_wakes_only_the_workers_with_filing_planned(db: Database) -> None:
    inbox, projects, archive = _folders(db, "INBOX", "Projects", "Archive")
    _task(db, _message(db, inbox, 7, 1))  # a move planned for a mail in INBOX
    _task(db, _message(db, archive, 6, 1))  # under an older UIDVALIDITY: the worker cannot do it
    watcher = FilingWatcher(db)
    wakes = {ref: Wakeup() for ref in (inbox, projects, archive)}
    for ref, wake in wakes.items():
        watcher.watch(ref, wake)
    assert watcher.look() == 1
    assert [ref.folder for ref, wake in wakes.items() if wake.is_set()] == ["INBOX"]


def test_a_refile_counts_under_any_uidvalidity_and_a_worker_at_work_is_not_woken(db: Database) -> None:
    _, projects = _folders(db, "INBOX", "Projects")
    task = _task(db, _message(db, projects, 6, 3), from_folder="Triage")  # a triage assignment: refile from Triage
    assert folders_with_pending(db) == {(projects.source_id, "Projects")}
    watcher = FilingWatcher(db)
    wake = Wakeup()
    watcher.watch(projects, wake)
    watcher.forget(projects)  # the worker is back at work: its pass carries the task out
    assert watcher.look() == 0 and not wake.is_set()
    watcher.watch(projects, wake)
    with db.engine.begin() as conn:
        conn.execute(update(FilingTask.__table__).where(FilingTask.__table__.c.id == task).values(status="done"))
    assert watcher.look() == 0 and not wake.is_set(), "nothing left to do"
    assert folders_with_pending(db) == set()
