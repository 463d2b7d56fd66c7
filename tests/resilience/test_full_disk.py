"""Issue 11 item 14: a full (or read-only) blob store is a storage error, not a bad message.

The blob store is a real 1 MB tmpfs: a message whose raw bytes fit but whose attachment does not gets ENOSPC
while the parser writes the attachment. Nothing of the batch is committed, the checkpoint stays, nothing is
quarantined, and the folder's status shows the disk error; once there is room, the same mail is stored whole.
"""

from __future__ import annotations

import mailbox
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from maild.daemon import Daemon
from maild.status import collect
from maild.store.models import Attachment, Location, Message, Quarantine
from tests.helpers import config_at, make_message, write_config

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "home" / "blobs"
    mount.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _remount(mount: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount)], check=True)


def _count(daemon: Daemon, table: type) -> int:
    with daemon.db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table.__table__)).scalar_one())


def test_full_disk_is_a_storage_error_and_the_batch_is_retried(tmp_path: Path, db_url: str, small_disk: Path) -> None:
    box = mailbox.Maildir(tmp_path / "mail", create=True)
    box.add(make_message(subject="small and fine"))
    box.add(make_message(subject="with a big attachment", attachment=os.urandom(450 * 1024)))
    config = write_config(tmp_path / "home", db_url, [{"name": "local", "type": "maildir", "path": str(box._path)}])
    daemon = Daemon(config_at(config))

    report = daemon.ingest_once()
    assert list(report.errors) == ["local"]
    assert "StorageError" in report.errors["local"] and "No space left on device" in report.errors["local"]
    assert (_count(daemon, Message), _count(daemon, Location), _count(daemon, Quarantine)) == (0, 0, 0)
    folder, = collect(daemon.db)["folders"]
    assert "No space left on device" in folder["last_error"], "status shows the disk error"

    _remount(small_disk, "ro")  # a read-only blob store is the same kind of error
    report = Daemon(config_at(config)).ingest_once()
    assert "Read-only file system" in report.errors["local"]
    assert (_count(daemon, Message), _count(daemon, Quarantine)) == (0, 0)

    _remount(small_disk, "rw,size=8m")
    report = Daemon(config_at(config)).ingest_once()
    assert report.errors == {} and report.handled == 2
    assert (_count(daemon, Message), _count(daemon, Location), _count(daemon, Quarantine)) == (2, 2, 0)
    assert _count(daemon, Attachment) == 1
    folder, = collect(daemon.db)["folders"]
    assert folder["last_error"] is None
