"""Folder checkpoints and the per-folder lease (one consumer per folder across all daemons).

The lease is a row-level compare-and-set in the database, so it works the same on SQLite and
PostgreSQL. Every checkpoint advance is fenced by the lease: a daemon that lost it cannot move
the watermark, and its whole batch rolls back.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, or_, select, update

from maild.clock import utcnow
from maild.store.db import Database
from maild.store.models import FolderCheckpoint, Source

_cp = FolderCheckpoint.__table__
_src = Source.__table__


class LeaseLost(Exception):
    """Another daemon holds this folder now; stop work on it and roll back."""


@dataclass(frozen=True)
class FolderRef:
    source_id: int
    source_name: str
    folder: str


@dataclass(frozen=True)
class CheckpointState:
    uidvalidity: int | None
    last_uid: int


def ensure_source(db: Database, name: str, kind: str, address: str) -> int:
    with db.engine.begin() as conn:
        conn.execute(db.insert_ignore(_src).values(name=name, kind=kind, address=address))
        conn.execute(update(_src).where(_src.c.name == name).values(kind=kind, address=address))
        return conn.execute(select(_src.c.id).where(_src.c.name == name)).scalar_one()


def ensure_folder(db: Database, source_id: int, source_name: str, folder: str) -> FolderRef:
    with db.engine.begin() as conn:
        conn.execute(db.insert_ignore(_cp).values(source_id=source_id, folder=folder, last_uid=0))
    return FolderRef(source_id, source_name, folder)


def _row(ref: FolderRef):
    return and_(_cp.c.source_id == ref.source_id, _cp.c.folder == ref.folder)


def acquire_lease(db: Database, ref: FolderRef, owner: str, ttl: float) -> bool:
    now = utcnow()
    with db.engine.begin() as conn:
        result = conn.execute(
            update(_cp)
            .where(_row(ref), or_(_cp.c.lock_owner.is_(None), _cp.c.lock_owner == owner,
                                  _cp.c.lock_expires_at < now))
            .values(lock_owner=owner, lock_expires_at=now + timedelta(seconds=ttl))
        )
        return result.rowcount == 1


def take_over_dead_lease(db: Database, ref: FolderRef, owner: str, ttl: float) -> bool:
    """Take the lease at once when its holder is a process on this host that no longer exists.

    Spares a restarted daemon (after kill -9 or a crash) from waiting out the TTL. Holders on
    other hosts are never second-guessed: their lease simply expires.
    """
    holder, _ = lease_holder(db, ref)
    if holder is None or not is_dead_local_process(holder):
        return False
    with db.engine.begin() as conn:
        result = conn.execute(
            update(_cp).where(_row(ref), _cp.c.lock_owner == holder)
            .values(lock_owner=owner, lock_expires_at=utcnow() + timedelta(seconds=ttl))
        )
        return result.rowcount == 1


def is_dead_local_process(holder: str) -> bool:
    """Whether an owner id (`host:pid:nonce`, see `new_owner_id`) names a process of this host that is gone."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def lease_holder(db: Database, ref: FolderRef) -> tuple[str | None, datetime | None]:
    with db.engine.connect() as conn:
        row = conn.execute(select(_cp.c.lock_owner, _cp.c.lock_expires_at).where(_row(ref))).one()
        return row[0], row[1]


def renew_lease(conn: Connection, ref: FolderRef, owner: str, ttl: float, **values: object) -> None:
    """Extend the lease inside the caller's transaction, optionally writing checkpoint values with it."""
    result = conn.execute(
        update(_cp)
        .where(_row(ref), _cp.c.lock_owner == owner)
        .values(lock_expires_at=utcnow() + timedelta(seconds=ttl), **values)
    )
    if result.rowcount != 1:
        raise LeaseLost(f"{ref.source_name}/{ref.folder}: lease taken over by another daemon")


def release_lease(db: Database, ref: FolderRef, owner: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(
            update(_cp).where(_row(ref), _cp.c.lock_owner == owner).values(lock_owner=None, lock_expires_at=None)
        )


def read_checkpoint(db: Database, ref: FolderRef) -> CheckpointState:
    with db.engine.connect() as conn:
        row = conn.execute(select(_cp.c.uidvalidity, _cp.c.last_uid).where(_row(ref))).one()
        return CheckpointState(row[0], row[1])


def record_success(db: Database, ref: FolderRef, **server: object) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(_cp).where(_row(ref)).values(last_success_at=utcnow(), last_error=None, **server))


def record_error(db: Database, ref: FolderRef, error: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(_cp).where(_row(ref)).values(last_error=error[:2000], last_error_at=utcnow()))
