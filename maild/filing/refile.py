"""Refiling: move a message that was filed before (e.g. into Triage) on to where it belongs now.

Its UID in the earlier folder was never recorded, so the message is found there by Message-ID; the
earlier folder is the one the server has (the earlier task's `filed_folder`). Run by the folder worker of
the message's original location, before it selects its own folder, and soon after an assignment even
while that worker idles (the daemon's filing watcher, maild/filing/watcher.py, wakes it within seconds).
"""

from __future__ import annotations

import logging
from typing import Any

from imapclient import IMAPClient
from sqlalchemy import select, update

from maild.clock import utcnow
from maild.filing.imap_filer import FolderRefused, ensure_folder, move
from maild.filing.runner import CONNECTION_ERRORS
from maild.store.checkpoints import FolderRef
from maild.store.db import Database
from maild.store.models import Event, FilingTask, Location, Message, MessageMatch

log = logging.getLogger("maild.filing")
_ft, _loc, _m, _mm = FilingTask.__table__, Location.__table__, Message.__table__, MessageMatch.__table__


def run_refiles(db: Database, client: IMAPClient, ref: FolderRef, max_attempts: int) -> int:
    """Carry out pending refile tasks of this folder's messages; returns how many were done."""
    with db.engine.connect() as conn:
        tasks = conn.execute(
            select(_ft.c.id, _ft.c.message_id, _ft.c.from_folder, _ft.c.target_folder, _m.c.header_message_id,
                   _mm.c.thirdparty_id)
            .join(_loc, _loc.c.id == _ft.c.location_id).join(_m, _m.c.id == _ft.c.message_id)
            .outerjoin(_mm, _mm.c.message_id == _ft.c.message_id)
            .where(_ft.c.status == "pending", _ft.c.from_folder.is_not(None),
                   _loc.c.source_id == ref.source_id, _loc.c.folder == ref.folder)).all()
    done = 0
    for task in tasks:
        try:
            server_folder = _refile(client, task)
        except CONNECTION_ERRORS:
            _failed(db, task.id, "connection lost while refiling", max_attempts)
            raise
        except Exception as exc:
            _failed(db, task.id, f"{type(exc).__name__}: {exc}", 1 if isinstance(exc, FolderRefused) else max_attempts)
            continue
        now = utcnow()
        data: dict[str, Any] = {"action": "move", "folder": task.target_folder, "from_folder": task.from_folder,
                                "source": ref.source_name, "already_gone": server_folder is None}
        if server_folder is not None and server_folder != task.target_folder:
            data["server_folder"] = server_folder
        with db.engine.begin() as conn:
            if conn.execute(update(_ft).where(_ft.c.id == task.id, _ft.c.status == "pending")
                            .values(status="done", done_at=now, filed_folder=server_folder)).rowcount:
                conn.execute(Event.__table__.insert().values(
                    type="mail.filed", occurred_at=now, recorded_at=now, thirdparty_id=task.thirdparty_id,
                    message_id=task.message_id, data=data))
                done += 1
    return done


def _refile(client: IMAPClient, task: Any) -> str | None:
    """Move the message from `task.from_folder` on; the server folder it went to, None when it was not there."""
    if not task.header_message_id:
        raise ValueError("the message has no Message-ID to find it by")
    client.select_folder(task.from_folder)
    uids = client.search(["HEADER", "Message-ID", task.header_message_id])
    if not uids:
        return None
    target = ensure_folder(client, task.target_folder)
    move(client, uids[:1], target)
    return target


def _failed(db: Database, task_id: int, error: str, max_attempts: int) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(_ft).where(_ft.c.id == task_id).values(attempts=_ft.c.attempts + 1, last_error=error))
        conn.execute(update(_ft).where(_ft.c.id == task_id, _ft.c.attempts >= max_attempts).values(status="failed"))
    log.warning("refile failed", extra={"fields": {"task": task_id, "error": error}})
