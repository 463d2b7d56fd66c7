"""The daemon's lease keeper (maild/ingest/leases.py) on SQLite and PostgreSQL: the leases of waiting workers are
renewed in one round, a worker that did not come back when it said loses its lease, a worker whose lease another
daemon took is woken, and so are the workers waiting for a lease that may be taken; end to end, an idle daemon
keeps its folder past the lease's TTL."""

from __future__ import annotations

import socket
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from maild.clock import utcnow
from maild.ingest.leases import LeaseKeeper
from maild.store import checkpoints
from maild.store.checkpoints import FolderRef
from maild.store.db import Database
from maild.store.models import FolderCheckpoint
from maild.wakeup import Wakeup
from tests.conftest import Mailbox
from tests.helpers import make_message, write_config
from tests.ingest.test_imap import _wait_for, _wait_synced, running_daemon
from tests.support.waiting import wait_for

_cp = FolderCheckpoint.__table__
OWNER = "host:1:aaaa"
TTL = 60.0


def _folders(db: Database, *names: str) -> list[FolderRef]:
    source = checkpoints.ensure_source(db, "acct", "imap", "acct@imap.example:143")
    refs = [checkpoints.ensure_folder(db, source, "acct", name) for name in names]
    for ref in refs:
        assert checkpoints.acquire_lease(db, ref, OWNER, TTL)
    return refs


def _expires(db: Database, ref: FolderRef) -> datetime:
    return _lease(db, ref)[1]


def _lease(db: Database, ref: FolderRef) -> tuple[str, datetime]:
    owner, expires = checkpoints.lease_holder(db, ref)
    assert owner is not None and expires is not None
    return owner, expires if expires.tzinfo else expires.replace(tzinfo=utcnow().tzinfo)


def _expire_soon(db: Database, ref: FolderRef) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(_cp).where(_cp.c.source_id == ref.source_id, _cp.c.folder == ref.folder)
                     .values(lock_expires_at=utcnow() + timedelta(seconds=5)))


def test_the_leases_of_all_waiting_workers_are_renewed_in_one_round(db: Database) -> None:
    refs = _folders(db, "INBOX", "Projects", "Archive")
    keeper = LeaseKeeper(db, OWNER, TTL)
    for ref in refs:
        _expire_soon(db, ref)
        keeper.hold(ref, time.monotonic() + 600)
    assert keeper.renew() == 3
    for ref in refs:
        assert _expires(db, ref) > utcnow() + timedelta(seconds=TTL / 2)


def test_a_worker_that_did_not_come_back_loses_its_lease(db: Database) -> None:
    alive, stuck = _folders(db, "INBOX", "Projects")
    keeper = LeaseKeeper(db, OWNER, TTL)
    for ref in (alive, stuck):
        _expire_soon(db, ref)
    keeper.hold(alive, time.monotonic() + 600)
    keeper.hold(stuck, time.monotonic() - 1)  # it promised to be back a second ago and is not
    assert keeper.renew() == 1
    assert _expires(db, alive) > utcnow() + timedelta(seconds=TTL / 2)
    assert _expires(db, stuck) < utcnow() + timedelta(seconds=10), "left to run out: another daemon may take it"
    keeper.drop(alive)  # back at work: it renews its lease itself again
    assert keeper.renew() == 0


def test_a_worker_whose_lease_another_daemon_took_is_woken(db: Database) -> None:
    kept, taken = _folders(db, "INBOX", "Projects")
    keeper = LeaseKeeper(db, OWNER, TTL)
    wakes = {kept: Wakeup(), taken: Wakeup()}
    for ref, wake in wakes.items():
        keeper.hold(ref, time.monotonic() + 600, wake)
    with db.engine.begin() as conn:
        conn.execute(update(_cp).where(_cp.c.folder == taken.folder).values(lock_owner="other:2:bbbb"))
    assert keeper.renew() == 1
    assert wakes[taken].is_set() and not wakes[kept].is_set()
    assert _lease(db, taken)[0] == "other:2:bbbb"


def test_an_idle_daemon_keeps_its_folder_past_the_leases_ttl(tmp_path: Path, mailbox: Mailbox) -> None:
    mailbox.append([make_message(subject="first")])
    ttl = 4.0
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'maild.db'}", [mailbox.source()], lock_ttl=ttl,
                          idle_check_interval=3600)
    with running_daemon(config) as daemon:
        _wait_for(lambda: _wait_synced(daemon.db), 60, "the first pass")
        ref, synced = _folder(daemon.db), _last_pass(daemon.db)
        owner, first = _lease(daemon.db, ref)
        # No new mail, no look at the folder for an hour: only the keeper can carry the lease past its expiry.
        wait_for(lambda: _expires(daemon.db, ref) > first + timedelta(seconds=ttl), 120,
                 "the lease to be renewed while the worker idles")
        assert _lease(daemon.db, ref)[0] == owner
        assert _last_pass(daemon.db) == synced, "the worker stayed in IDLE meanwhile"


def _folder(db: Database) -> FolderRef:
    with db.engine.connect() as conn:
        source_id, folder = conn.execute(select(_cp.c.source_id, _cp.c.folder)).one()
    return FolderRef(source_id, "mbox", folder)


def _last_pass(db: Database) -> datetime | None:
    with db.engine.connect() as conn:
        return conn.execute(select(_cp.c.last_success_at)).scalar()


def test_workers_waiting_for_another_daemons_folder_are_woken_when_its_lease_may_be_taken(db: Database) -> None:
    live, expired, free, dead = refs = _folders(db, "Live", "Expired", "Free", "Dead")
    dead_owner = f"{socket.gethostname()}:{_ended_pid()}:cccc"  # a process of this host that has ended
    with db.engine.begin() as conn:
        for ref, owner, expires in ((live, "other:2:bbbb", 600), (expired, "other:2:bbbb", -5), (free, None, None),
                                    (dead, dead_owner, 600)):
            conn.execute(update(_cp).where(_cp.c.folder == ref.folder).values(
                lock_owner=owner, lock_expires_at=None if expires is None else utcnow() + timedelta(seconds=expires)))
    keeper = LeaseKeeper(db, OWNER, TTL)
    wakes = {ref: Wakeup() for ref in refs}
    for ref, wake in wakes.items():
        keeper.want(ref, wake)
    assert keeper.offer() == 3
    assert [ref.folder for ref, wake in wakes.items() if wake.is_set()] == ["Expired", "Free", "Dead"]
    keeper.unwant(expired)
    wakes[expired].clear()
    assert keeper.offer() == 2 and not wakes[expired].is_set()


def _ended_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid
