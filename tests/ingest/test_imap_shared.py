"""The per-account connection limit against the real Dovecot: folders beyond `max_connections` share one polling
connection, and are ingested, filed and resynced with the same guarantees as folders with their own."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from maild.daemon import Daemon
from maild.directory.service import add_thirdparty
from maild.imap.connection import connect
from maild.imap.limits import split_folders
from maild.ingest.sources.imap_shared import SharedImapPoller
from maild.store.db import Database
from maild.store.models import Event, FolderCheckpoint, Location, Message, MessageMatch
from tests.conftest import Mailbox
from tests.helpers import config_at, invoke, make_message, status_json, write_config
from tests.ingest.test_imap import running_daemon
from tests.support.sockets import tcp_connections
from tests.support.waiting import wait_for as _wait_for

FOLDERS = ["INBOX", "F1", "F2", "F3", "F4"]
FILING = {"action": "move", "matched_folder": "Customers/{{ thirdparty.name }}", "triage_folder": "Triage"}
RECEIVED = Event.__table__.c.type == "mail.received"


def wait_for(predicate: Callable[[], object], *, timeout: float, what: str) -> None:
    """Like tests.support.waiting.wait_for; a database the daemon has not created yet counts as "not yet"."""

    def ready() -> object:
        try:
            return predicate()
        except DBAPIError:
            return False

    _wait_for(ready, timeout=timeout, what=what)


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'maild.db'}"


def _count(db: Database, table: type, *where: object) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table.__table__).where(*where)).scalar_one()


def _synced_folders(db: Database) -> int:
    cp = FolderCheckpoint.__table__
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(cp).where(cp.c.last_success_at.is_not(None))).scalar_one()


def _with_matching(config: Path) -> Path:
    config.write_text(config.read_text() + "matching:\n  instance_id: inst01\n  own_domains: [example.com]\n")
    return config


@dataclass
class ConnectionSampler:
    """Counts a daemon's IMAP connections every 50 ms while it runs; the most it ever held."""

    pid: int
    port: int
    most: int = 0
    samples: int = 0
    stderr: str = ""  # the daemon's log, once it stopped
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                now = tcp_connections(self.pid, self.port)
            except OSError:  # the process ended
                return
            self.most = max(self.most, now)
            self.samples += 1


@contextmanager
def daemons(config: Path, port: int, count: int = 1) -> Iterator[list[ConnectionSampler]]:
    """`maild run` as `count` real processes, their IMAP connections sampled from start to stop."""
    logs = [config.parent / f"daemon-{index}.log" for index in range(count)]  # a file: a full pipe would block it
    procs = []
    for log in logs:
        with log.open("w") as handle:
            procs.append(subprocess.Popen([sys.executable, "-m", "maild", "--config", str(config), "run"],
                                          stdout=subprocess.DEVNULL, stderr=handle))
    samplers = [ConnectionSampler(proc.pid, port) for proc in procs]
    threads = [threading.Thread(target=s.run, daemon=True) for s in samplers]
    for thread in threads:
        thread.start()
    try:
        yield samplers
    finally:
        for sampler in samplers:
            sampler._stop.set()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=90)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        errors = [log.read_text() for log in logs]
        for sampler, err in zip(samplers, errors, strict=True):
            sampler.stderr = err
    assert all(proc.returncode == 0 for proc in procs), errors


def test_the_split_keeps_the_first_folders_on_their_own_connections() -> None:
    assert split_folders(["A", "B"], 2) == (["A", "B"], [])
    assert split_folders(["A", "B", "C", "D"], 3) == (["A", "B"], ["C", "D"])
    assert split_folders(["A", "B"], 1) == ([], ["A", "B"])


def test_folders_beyond_the_limit_share_one_connection_and_are_ingested_and_filed(
        tmp_path: Path, mailbox: Mailbox) -> None:
    for folder in FOLDERS:
        mailbox.append([make_message(subject=f"old {folder}")], folder=folder)
    source = mailbox.source(folders=FOLDERS, max_connections=3, filing=FILING)
    config = _with_matching(write_config(tmp_path, _sqlite(tmp_path), [source], poll_interval=1))
    db = Database(config_at(config).database_url)
    db.upgrade()
    try:
        with daemons(config, mailbox.server.port) as (sampler,):
            wait_for(lambda: _synced_folders(db) == len(FOLDERS), timeout=120, what="every folder's first pass")
            wait_for(lambda: len(mailbox.subjects("Triage")) == len(FOLDERS), timeout=60,
                     what="the unmatched mail filed into Triage, from every folder")
            mailbox.append([make_message(subject="new in a polled folder")], folder="F4")
            wait_for(lambda: "new in a polled folder" in mailbox.subjects("Triage"), timeout=60,
                     what="the new mail of a polled folder ingested and filed")
            wait_for(lambda: {f["folder"]: f["connection"] for f in status_json(config)["folders"]} == {
                "INBOX": "idle", "F1": "idle", "F2": "polled", "F3": "polled", "F4": "polled"},
                timeout=30, what="status to show which folders are polled")
            shared, polled = f"ingest {source['name']} (shared connection)", f"ingest {source['name']}/F3 (polled)"
            wait_for(lambda: {w["name"]: w["state"] for w in status_json(config)["workers"]}.keys() >= {shared, polled}
                     and all(w["state"] == "running" for w in status_json(config)["workers"]
                             if w["name"] in (shared, polled)),
                     timeout=30, what="the shared connection and its folders running, in status")
        assert sampler.samples > 20
        assert sampler.most == 3, "two folders on their own connections, the other three on one shared connection"
        assert "polled over one shared connection" in sampler.stderr and "polled=F2,F3,F4" in sampler.stderr
        assert _count(db, Message) == _count(db, Event, RECEIVED) == len(FOLDERS) + 1
        assert all(mailbox.subjects(folder) == [] for folder in FOLDERS)  # moved, not copied
    finally:
        db.dispose()


def test_a_triage_assignment_is_refiled_promptly_over_the_shared_connection(tmp_path: Path, mailbox: Mailbox) -> None:
    """No new mail, and the next poll 5 minutes away: the poller must notice the planned refile itself."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Bob <bob@gmail.com>", "sales@example.com", "hello from a stranger"
    msg["Message-ID"] = "<stranger.1@mail.example>"
    msg.set_content("Hello")
    mailbox.append([msg.as_bytes()], folder="Archive")
    source = mailbox.source(folders=["INBOX", "Archive"], max_connections=1, filing=FILING)
    config = _with_matching(write_config(tmp_path, _sqlite(tmp_path), [source], poll_interval=300))
    db = Database(config_at(config).database_url)
    db.upgrade()
    add_thirdparty(db, name="ACME Corp", domains=["acme.example"])
    try:
        with running_daemon(config):
            wait_for(lambda: mailbox.subjects("Triage") == ["hello from a stranger"], timeout=60,
                     what="the mail in Triage")
            wait_for(lambda: _synced_folders(db) == 2, timeout=30, what="the round to end (the poller then waits)")
            mm = MessageMatch.__table__
            with db.engine.connect() as conn:
                message_id = conn.execute(select(mm.c.message_id).where(mm.c.status == "unmatched")).scalar_one()
            invoke(config, "triage", "assign", str(message_id), "ACME Corp")
            wait_for(lambda: mailbox.subjects("Customers/ACME Corp") == ["hello from a stranger"], timeout=60,
                     what="the assigned mail to leave Triage before the next poll")
        assert mailbox.subjects("Triage") == []
    finally:
        db.dispose()


def test_two_daemons_on_postgres_ingest_each_message_of_polled_folders_once(
        tmp_path: Path, mailbox: Mailbox, pg_url: str) -> None:
    source = mailbox.source(folders=FOLDERS, max_connections=2)
    config = write_config(tmp_path, pg_url, [source], lock_ttl=5, poll_interval=1)
    db = Database(config_at(config).database_url)
    db.upgrade()
    per_round = 30
    try:
        with daemons(config, mailbox.server.port, count=2) as samplers:
            for round_ in range(3):
                for folder in FOLDERS:
                    mailbox.append([make_message(subject=f"{folder} r{round_} {i}") for i in range(per_round)],
                                   folder=folder)
                appended = (round_ + 1) * per_round * len(FOLDERS)
                wait_for(lambda n=appended: _count(db, Location) >= n, timeout=180, what="both daemons to catch up")
        assert all(s.most <= 2 for s in samplers), [s.most for s in samplers]
        loc = Location.__table__
        for folder in FOLDERS:
            uidvalidity, uids = mailbox.uids(folder)
            with db.engine.connect() as conn:
                rows = conn.execute(select(loc.c.uidvalidity, loc.c.uid).where(loc.c.folder == folder)).all()
            assert sorted((r[0], r[1]) for r in rows) == [(uidvalidity, uid) for uid in uids], folder
        total = 3 * per_round * len(FOLDERS)
        assert _count(db, Message) == _count(db, Event, RECEIVED) == total
    finally:
        db.dispose()


def test_uidvalidity_change_of_a_polled_folder_resyncs_without_reimport(tmp_path: Path, mailbox: Mailbox) -> None:
    mailbox.append([make_message(subject=f"m{i}") for i in range(4)], folder="Archive")
    source = mailbox.source(folders=["INBOX", "Archive"], max_connections=1)
    config = write_config(tmp_path, _sqlite(tmp_path), [source], poll_interval=1, reconnect_max_delay=1)
    loc = Location.__table__
    with running_daemon(config) as daemon:
        wait_for(lambda: _count(daemon.db, Message) == 4, timeout=60, what="the first pass")
        old_validity, _ = mailbox.uids("Archive")
        new_validity = mailbox.server.reset_uidvalidity(mailbox.user, "Archive", renumber=True)
        assert new_validity != old_validity
        mailbox.append([make_message(subject="after the change")], folder="Archive")
        wait_for(lambda: _count(daemon.db, Location, loc.c.uidvalidity == new_validity) == 5, timeout=60,
                 what="the polled folder resynced under its new UIDVALIDITY")
        assert _count(daemon.db, Message) == _count(daemon.db, Event, RECEIVED) == 5, "known mail linked, not again"
        _, uids = mailbox.uids("Archive")
        with daemon.db.engine.connect() as conn:
            current = conn.execute(select(loc.c.uid).where(loc.c.uidvalidity == new_validity)).scalars().all()
        assert sorted(current) == uids


def test_ingest_once_polls_over_one_connection_oversized_streamed_and_one_bad_folder_alone(
        tmp_path: Path, mailbox: Mailbox) -> None:
    mailbox.append([make_message(subject="small one"), make_message(subject="small two")])
    mailbox.append([make_message(subject="big", attachment=b"x" * 200_000)], folder="Big")
    source = mailbox.source(folders=["INBOX", "Big", "Missing"], max_connections=1)
    config = write_config(tmp_path, _sqlite(tmp_path), [source], max_message_bytes=100_000)
    result = invoke(config, "ingest", "--once", check=False)
    assert result.returncode == 1
    assert "error: mbox/Missing:" in result.stderr
    assert "error: mbox/INBOX" not in result.stderr and "error: mbox/Big" not in result.stderr
    totals = status_json(config)["totals"]
    assert (totals["messages"], totals["quarantined"]) == (2, 1), "the big one streamed and quarantined as oversized"
    errors = {f["folder"]: f["last_error"] for f in status_json(config)["folders"]}
    assert errors["Missing"] and errors["INBOX"] is None and errors["Big"] is None


def test_a_round_selects_only_the_folders_that_changed(tmp_path: Path, mailbox: Mailbox,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """STATUS for every folder, SELECT only where mail came -- also in the folder the previous pass selected (a
    server answers STATUS of the selected folder from the session's stale view)."""
    import maild.ingest.sources.imap_shared as shared

    folders = ["INBOX", "A", "B"]
    for folder in folders:
        mailbox.append([make_message(subject=f"first {folder}")], folder=folder)
    selected: list[str] = []

    def counting_connect(*args: object) -> object:
        client = connect(*args)  # type: ignore[arg-type]
        select = client.select_folder

        def select_folder(folder: str, readonly: bool = False) -> object:
            selected.append(folder)
            return select(folder, readonly=readonly)

        client.select_folder = select_folder  # type: ignore[method-assign]
        return client

    monkeypatch.setattr(shared, "connect", counting_connect)
    config = config_at(write_config(tmp_path, _sqlite(tmp_path), [mailbox.source(folders=folders,
                                                                                max_connections=1)]))
    daemon = Daemon(config)
    daemon.db.upgrade()
    pipeline = daemon.start_pool()
    try:
        (poller,) = daemon.workers(daemon.context(pipeline))
        assert isinstance(poller, SharedImapPoller)
        try:
            poller._round()
            assert sorted(selected) == sorted(folders) and _count(daemon.db, Message) == 3
            selected.clear()
            poller._round()
            assert selected == [], "nothing changed: STATUS only"
            mailbox.append([make_message(subject="second B")], folder="B")  # B was the last folder selected
            poller._round()
            assert selected == ["B"] and _count(daemon.db, Message) == 4
        finally:
            poller._let_go()
    finally:
        daemon.shutdown()


def test_a_daemon_opens_no_connection_for_a_folder_another_daemon_holds(
        tmp_path: Path, mailbox: Mailbox, pg_url: str) -> None:
    """Three folders, each on its own IDLE connection, two daemons: each folder is connected by the daemon that holds
    its lease only, so the two together hold three connections, not six; mail still arrives once."""
    folders = ["INBOX", "F1", "F2"]
    for folder in folders:
        mailbox.append([make_message(subject=f"{folder} first")], folder=folder)
    source = mailbox.source(folders=folders, max_connections=8)
    # a long lease: no folder changes hands while the machine is busy, so the count is steady
    config = write_config(tmp_path, pg_url, [source], lock_ttl=60, poll_interval=1)
    db = Database(config_at(config).database_url)
    db.upgrade()
    try:
        with daemons(config, mailbox.server.port, count=2) as samplers:
            wait_for(lambda: _count(db, Message) == 3, timeout=120, what="the first mails")

            def both() -> int:
                return sum(tcp_connections(s.pid, mailbox.server.port) for s in samplers)

            wait_for(lambda: both() == 3, timeout=120, what="one connection per folder across both daemons")
            mailbox.append([make_message(subject="F2 second")], folder="F2")
            wait_for(lambda: _count(db, Message) == 4, timeout=120, what="new mail ingested")
            assert both() == 3
        assert _count(db, Message) == _count(db, Event, RECEIVED) == 4
    finally:
        db.dispose()
