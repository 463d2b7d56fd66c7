"""Work through the pending filing tasks of one selected IMAP folder.

`run_pending` is called with the folder SELECTed read-write. Tasks are grouped by what they do
(action, target folder, keywords) so that one IMAP command handles many messages. Each group first
asks the server (UID SEARCH) which of its UIDs are still there: a UID that is gone was moved on an
earlier attempt whose outcome never reached the database (the connection died after the server acted),
or the message was removed meanwhile; either way nothing is left to do and its task ends 'done' with
``already_gone`` in the event. A failed group counts an attempt on each of its tasks (after
`max_attempts`, 'failed'); a folder the server refuses under every name tried fails its tasks at once
(`FolderRefused`: asking again gets the same answer). A lost connection is recorded like a failure and
then raised, so the caller reconnects and runs again. A task done records the folder as the server has it
(`filed_folder`).
"""

from __future__ import annotations

import imaplib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError
from sqlalchemy import case, func, select, update

from maild.clock import utcnow
from maild.filing.imap_filer import FolderRefused, add_keywords, copy, ensure_folder, move
from maild.store.checkpoints import FolderRef
from maild.store.db import Database
from maild.store.models import Event, FilingTask, FolderCheckpoint, Location, MessageMatch

log = logging.getLogger("maild.filing")

ACTIONS = ("keywords", "copy", "move")  # also the order groups run in: a copy before a move of the same mail
GROUP_UIDS = 500  # UIDs per IMAP command
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (OSError, imaplib.IMAP4.abort, IMAPClientAbortError)

_task = FilingTask.__table__
_loc = Location.__table__
_match = MessageMatch.__table__
_event = Event.__table__
_checkpoint = FolderCheckpoint.__table__


@dataclass
class FilingReport:
    done: int = 0
    failed: int = 0
    pending: int = 0


@dataclass(frozen=True)
class _Task:
    id: int
    message_id: int
    uid: int
    thirdparty_id: int | None


@dataclass(frozen=True)
class _Group:
    action: str
    target: str
    keywords: tuple[str, ...]


def run_pending(db: Database, client: IMAPClient, ref: FolderRef, uidvalidity: int,
                max_attempts: int) -> FilingReport:
    """Do the pending filing tasks of `ref` under `uidvalidity` with `client` (the folder SELECTed read-write).

    Returns how many of them ended done, failed, and are still pending. Connection errors propagate
    (after the attempt is recorded); any other error is recorded on the group's tasks and the run goes on.
    """
    groups = _load(db, ref, uidvalidity)
    total = sum(len(tasks) for tasks in groups.values())
    report = FilingReport()
    order = sorted(groups, key=lambda g: (ACTIONS.index(g.action) if g.action in ACTIONS else len(ACTIONS),
                                          g.target, g.keywords))
    for group in order:
        for chunk in _chunks(groups[group], GROUP_UIDS):
            _run_group(db, client, ref, group, chunk, max_attempts, report)
    report.pending = total - report.done - report.failed
    return report


def has_pending(db: Database, ref: FolderRef) -> bool:
    """Whether a filing task waits for this folder's worker: a move planned by a rule while the worker idles,
    or a refile of one of its messages (a triage assignment) from the folder it was filed into. Tasks of
    locations under an older UIDVALIDITY do not count: `run_pending` cannot do them."""
    current = (select(_checkpoint.c.uidvalidity)
               .where(_checkpoint.c.source_id == ref.source_id, _checkpoint.c.folder == ref.folder)
               .scalar_subquery())
    query = (select(_task.c.id).select_from(_task.join(_loc, _loc.c.id == _task.c.location_id))
             .where(_task.c.status == "pending", _loc.c.source_id == ref.source_id, _loc.c.folder == ref.folder,
                    _task.c.from_folder.is_not(None) | (_loc.c.uidvalidity == current)).limit(1))
    with db.engine.connect() as conn:
        return conn.execute(query).first() is not None


def folders_with_pending(db: Database) -> set[tuple[int, str]]:
    """The folders (source id, folder) whose worker has filing to do: a move planned by a rule while the worker
    idles, or a refile of one of its messages (a triage assignment) from the folder it was filed into. One query
    for every folder. Tasks of locations under an older UIDVALIDITY do not count: `run_pending` cannot do them."""
    query = (select(_loc.c.source_id, _loc.c.folder).distinct()
             .select_from(_task.join(_loc, _loc.c.id == _task.c.location_id)
                          .join(_checkpoint, (_checkpoint.c.source_id == _loc.c.source_id)
                                & (_checkpoint.c.folder == _loc.c.folder)))
             .where(_task.c.status == "pending",
                    _task.c.from_folder.is_not(None) | (_loc.c.uidvalidity == _checkpoint.c.uidvalidity)))
    with db.engine.connect() as conn:
        return {(source_id, folder) for source_id, folder in conn.execute(query)}


def _load(db: Database, ref: FolderRef, uidvalidity: int) -> dict[_Group, list[_Task]]:
    query = (
        select(_task.c.id, _task.c.message_id, _task.c.action, _task.c.target_folder, _task.c.keywords,
               _loc.c.uid, _match.c.thirdparty_id)
        .select_from(_task.join(_loc, _loc.c.id == _task.c.location_id)
                     .outerjoin(_match, _match.c.message_id == _task.c.message_id))
        .where(_task.c.status == "pending", _loc.c.source_id == ref.source_id, _loc.c.folder == ref.folder,
               _loc.c.uidvalidity == uidvalidity, _task.c.from_folder.is_(None))
        .order_by(_loc.c.uid, _task.c.id)
    )
    groups: dict[_Group, list[_Task]] = {}
    with db.engine.connect() as conn:
        for row in conn.execute(query):
            group = _Group(row.action, row.target_folder or "", tuple(sorted(set(row.keywords or []))))
            groups.setdefault(group, []).append(_Task(row.id, row.message_id, row.uid, row.thirdparty_id))
    return groups


def _run_group(db: Database, client: IMAPClient, ref: FolderRef, group: _Group, tasks: list[_Task],
               max_attempts: int, report: FilingReport) -> None:
    remaining = tasks
    try:
        present = _existing_uids(client, [task.uid for task in tasks])
        gone = [task for task in tasks if task.uid not in present]
        if gone:
            report.done += _mark_done(db, ref, group, gone, server_folder=None, already_gone=True)
        remaining = [task for task in tasks if task.uid in present]
        if not remaining:
            return
        server_folder = _apply(client, group, sorted({task.uid for task in remaining}))
    except Exception as exc:
        failed = _record_failure(db, remaining, exc, 1 if isinstance(exc, FolderRefused) else max_attempts)
        report.failed += failed
        log.warning("filing failed: %s: %s", type(exc).__name__, exc,
                    extra={"fields": {"source": ref.source_name, "folder": ref.folder, "action": group.action,
                                      "target": group.target, "tasks": len(remaining), "failed": failed}})
        if isinstance(exc, CONNECTION_ERRORS):
            raise
        return
    report.done += _mark_done(db, ref, group, remaining, server_folder=server_folder, already_gone=False)


def _existing_uids(client: IMAPClient, uids: list[int]) -> set[int]:
    wanted = set(uids)
    return wanted & {int(uid) for uid in client.search(["UID", _uid_set(sorted(wanted))])}


def _apply(client: IMAPClient, group: _Group, uids: list[int]) -> str | None:
    """Do the group's work on `uids`; return the server folder moved/copied to (None for keywords only)."""
    if group.action not in ACTIONS:
        raise ValueError(f"unknown filing action {group.action!r}")
    server_folder = None
    if group.action in ("move", "copy"):
        if not group.target:
            raise ValueError(f"filing action {group.action!r} without a target folder")
        server_folder = ensure_folder(client, group.target)
    if group.keywords:
        add_keywords(client, uids, group.keywords)
    if group.action == "move":
        move(client, uids, server_folder)
    elif group.action == "copy":
        copy(client, uids, server_folder)
    return server_folder


def _mark_done(db: Database, ref: FolderRef, group: _Group, tasks: list[_Task], *, server_folder: str | None,
               already_gone: bool) -> int:
    """Mark `tasks` done and append one mail.filed event for each that this call moved out of 'pending'."""
    now = utcnow()
    done = 0
    with db.engine.begin() as conn:
        for task in tasks:
            result = conn.execute(update(_task).where(_task.c.id == task.id, _task.c.status == "pending")
                                  .values(status="done", done_at=now, filed_folder=server_folder))
            if result.rowcount != 1:
                continue  # another runner finished it meanwhile; its event is already there
            data: dict[str, Any] = {"action": group.action, "folder": group.target, "source": ref.source_name,
                                    "from_folder": ref.folder, "uid": task.uid}
            if group.keywords:
                data["keywords"] = list(group.keywords)
            if server_folder is not None and server_folder != group.target:
                data["server_folder"] = server_folder
            if already_gone:
                data["already_gone"] = True
            conn.execute(_event.insert().values(type="mail.filed", occurred_at=now, recorded_at=now,
                                                thirdparty_id=task.thirdparty_id, message_id=task.message_id,
                                                data=data))
            done += 1
    return done


def _record_failure(db: Database, tasks: list[_Task], exc: BaseException, max_attempts: int) -> int:
    """Count one attempt on each task, keep the error; return how many reached `max_attempts` ('failed')."""
    if not tasks:
        return 0
    ids = [task.id for task in tasks]
    error = f"{type(exc).__name__}: {exc}"[:2000]
    with db.engine.begin() as conn:
        conn.execute(
            update(_task).where(_task.c.id.in_(ids), _task.c.status == "pending")
            .values(attempts=_task.c.attempts + 1, last_error=error,
                    status=case((_task.c.attempts + 1 >= max_attempts, "failed"), else_=_task.c.status))
        )
        return conn.execute(select(func.count()).select_from(_task)
                            .where(_task.c.id.in_(ids), _task.c.status == "failed")).scalar_one()


def _uid_set(uids: list[int]) -> str:
    """Sorted UIDs as an IMAP sequence set with ranges: [1, 2, 3, 7] -> "1:3,7"."""
    parts: list[str] = []
    start = prev = uids[0]
    for uid in uids[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = uid
    parts.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(parts)


def _chunks(tasks: list[_Task], size: int) -> Iterator[list[_Task]]:
    for start in range(0, len(tasks), size):
        yield tasks[start:start + size]
