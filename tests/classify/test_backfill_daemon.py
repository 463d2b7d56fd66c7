"""The daemon classifies mail stored before classification in the background (SQLite and PostgreSQL): in small
batches after the start, shown in status, resumed by the next daemon, retried when the blob store is not there."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from maild.classify.backfill import unclassified
from maild.config import Config, load_config
from maild.daemon import Daemon
from maild.status import collect
from maild.store.blobs import BlobStore
from maild.store.db import Database
from tests.classify.test_backfill import INSTANCE, auto_reply, bounce, person, rows, stored
from tests.support.waiting import wait_for


def config(home: Path, db: Database, **machine: Any) -> Config:
    path = home / "maild.yaml"
    path.write_text(yaml.safe_dump({
        "database": {"url": db.url}, "storage": {"blob_dir": "blobs"}, "sources": [],
        "matching": {"instance_id": INSTANCE}, "machine_mail": machine, "rules": {"enabled": False},
        "tracking": {"enabled": False}, "web": {"enabled": False}}))
    return load_config(path, environ={})


@contextmanager
def running(cfg: Config) -> Iterator[Daemon]:
    daemon = Daemon(cfg)
    thread = threading.Thread(target=daemon.run, name="daemon-under-test")
    thread.start()
    try:
        wait_for(lambda: daemon.backfill is not None or not thread.is_alive(), what="the daemon to start")
        yield daemon
    finally:
        daemon.stop.set()
        thread.join(timeout=60)
        daemon.db.dispose()
    assert not thread.is_alive(), "the daemon stops cleanly"


def old_mail(db: Database, blobs: BlobStore, count: int) -> list[int]:
    makers: list[Callable[[], bytes]] = [person, auto_reply, bounce]
    return [stored(db, blobs, _variant(makers[n % 3](), n), subject=str(n)) for n in range(count)]


def _variant(raw: bytes, n: int) -> bytes:
    """The same mail with one more header line, so each is its own blob."""
    return f"X-Copy: {n}\r\n".encode() + raw


def left(db: Database) -> int:
    with db.engine.connect() as conn:
        return unclassified(conn)


def test_the_daemon_classifies_old_mail_in_the_background(db: Database, tmp_path: Path) -> None:
    cfg = config(tmp_path, db, backfill_batch=2, backfill_pause=0.05)
    ids = old_mail(db, BlobStore(cfg.blob_dir), 7)
    with running(cfg) as daemon:
        assert daemon.backfill is not None
        wait_for(daemon.backfill.done.is_set, timeout=120, what="the background backfill to finish")
        assert daemon.backfill.total.rows == 7 and daemon.backfill.total.written == 7

        def shown() -> bool:
            return any(w["name"] == "classify-backfill" and w["state"] == "running" for w in collect(db)["workers"])
        wait_for(shown, timeout=60, what="the backfill worker in status")
        assert collect(db)["classify"]["unclassified"] == 0
    kinds = [rows(db)[i].kind for i in ids]
    assert kinds == ["human", "auto_reply", "bounce"] * 2 + ["human"]


def test_the_next_daemon_goes_on_where_one_stopped(db: Database, tmp_path: Path) -> None:
    slow = config(tmp_path, db, backfill_batch=1, backfill_pause=30)
    ids = old_mail(db, BlobStore(slow.blob_dir), 5)
    with running(slow):
        wait_for(lambda: left(db) == 4, timeout=120, what="the first batch")
        status = collect(db)["classify"]
        assert status["unclassified"] == 4 and status["backfill"] is not None  # the daemon that holds the lease
    assert [rows(db)[i].kind is None for i in ids] == [True] * 4 + [False]  # newest first
    with running(config(tmp_path, db, backfill_batch=50, backfill_pause=0)) as daemon:
        assert daemon.backfill is not None
        wait_for(daemon.backfill.done.is_set, timeout=120, what="the second daemon's backfill")
        assert daemon.backfill.total.written == 4
    assert left(db) == 0


def test_a_missing_blob_store_is_shown_and_retried(db: Database, tmp_path: Path) -> None:
    cfg = config(tmp_path, db, backfill_batch=10, backfill_pause=0)
    elsewhere = BlobStore(tmp_path / "elsewhere")
    raw = person()
    message = stored(db, elsewhere, raw)
    with running(cfg) as daemon:
        assert daemon.backfill is not None
        health = daemon.backfill.health
        wait_for(lambda: health.attempt >= 1, timeout=60, what="the backfill to fail")
        assert "storage.blob_dir" in (health.view().last_error or "") and left(db) == 1
        BlobStore(cfg.blob_dir).put(raw)  # the store is there now (e.g. the disk mounted)
        wait_for(daemon.backfill.done.is_set, timeout=120, what="the backfill after the blob store came")
    assert left(db) == 0 and rows(db)[message].kind == "human"


@pytest.mark.parametrize("machine", [{"backfill_batch": 0}, {"classify": False}])
def test_no_background_backfill_when_turned_off(db: Database, tmp_path: Path, machine: dict[str, Any]) -> None:
    cfg = config(tmp_path, db, **machine)
    stored(db, BlobStore(cfg.blob_dir), person())
    daemon = Daemon(cfg)
    thread = threading.Thread(target=daemon.run, name="daemon-under-test")
    thread.start()
    try:
        wait_for(lambda: bool(daemon.board.views()), timeout=60, what="the daemon to start its workers")
    finally:
        daemon.stop.set()
        thread.join(timeout=60)
        daemon.db.dispose()
    assert daemon.backfill is None and left(db) == 1
