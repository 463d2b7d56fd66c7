"""IMAP ingestion against a real Dovecot: incremental, IDLE, UIDVALIDITY, restarts, crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from maild.daemon import Daemon
from maild.store.db import Database
from maild.store.models import Event, FolderCheckpoint, Location, Message
from tests.conftest import Mailbox
from tests.helpers import config_at, corpus_files, invoke, make_message, status_json, write_config
from tests.support.dovecot import Dovecot

RECEIVED = Event.__table__.c.type == "mail.received"


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'maild.db'}"


def _count(db: Database, table: type, *where: object) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table.__table__).where(*where)).scalar_one()


def _locations(db: Database, folder: str = "INBOX") -> list[tuple[int, int]]:
    loc = Location.__table__
    with db.engine.connect() as conn:
        rows = conn.execute(select(loc.c.uidvalidity, loc.c.uid).where(loc.c.folder == folder)).all()
    return sorted((r[0], r[1]) for r in rows)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if condition():
                return time.monotonic() - start
        except DBAPIError:  # the daemon has not created its schema yet
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextmanager
def running_daemon(config: Path) -> Iterator[Daemon]:
    """`maild run` in this process (a thread), stopped as SIGTERM would stop it."""
    daemon = Daemon(config_at(config))
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        yield daemon
    finally:
        daemon.stop.set()
        thread.join(timeout=90)  # its threads are joined with 30 s each: generous on a loaded machine
        assert not thread.is_alive(), "daemon did not stop within 90 s"


def test_incremental_fetch_without_marking_seen(tmp_path: Path, mailbox: Mailbox, db_url: str) -> None:
    mailbox.append([make_message(subject=f"first {i}") for i in range(3)])
    config = write_config(tmp_path, db_url, [mailbox.source()])
    assert Daemon(config_at(config)).ingest_once().handled == 3
    mailbox.append([make_message(subject=f"second {i}") for i in range(2)])
    daemon = Daemon(config_at(config))
    report = daemon.ingest_once()
    assert (report.handled, report.errors) == (2, {})
    uidvalidity, uids = mailbox.uids()
    assert _locations(daemon.db) == [(uidvalidity, uid) for uid in uids]
    assert _count(daemon.db, Message) == _count(daemon.db, Event, RECEIVED) == 5
    with daemon.db.engine.connect() as conn:
        assert conn.execute(select(FolderCheckpoint.__table__.c.last_uid)).scalar_one() == max(uids)
    with mailbox.server.client(mailbox.user, mailbox.password) as imap:
        imap.select_folder("INBOX", readonly=True)
        flags = imap.get_flags(uids)
    assert all(b"\\Seen" not in f for f in flags.values()), "ingest must not mark mail read"


def test_mark_seen_after_commit_when_configured(tmp_path: Path, mailbox: Mailbox) -> None:
    mailbox.append([make_message(subject="read me")])
    config = write_config(tmp_path, _sqlite(tmp_path), [mailbox.source()], mark_seen=True)
    Daemon(config_at(config)).ingest_once()
    with mailbox.server.client(mailbox.user, mailbox.password) as imap:
        imap.select_folder("INBOX", readonly=True)
        assert all(b"\\Seen" in f for f in imap.get_flags(imap.search("ALL")).values())


def test_source_url_on_the_command_line_and_several_folders(tmp_path: Path, mailbox: Mailbox) -> None:
    shared = make_message(subject="filed twice")
    mailbox.append([shared, make_message(subject="inbox only")])
    mailbox.append([shared], folder="Archive")
    home = tmp_path / "home"
    config = write_config(home, _sqlite(tmp_path), [])
    url = mailbox.url("INBOX") + "?folders=INBOX,Archive&name=cli"
    result = invoke(config, "ingest", "--once", "--source", url)
    assert "ingested 3 message(s)" in result.stdout
    assert mailbox.password not in result.stdout + result.stderr, "secrets never logged"
    totals = status_json(config)["totals"]
    assert (totals["messages"], totals["locations"], totals["events"]) == (2, 3, 4), "received + unmatched"


def test_source_url_takes_the_password_from_a_file_or_a_variable(tmp_path: Path, mailbox: Mailbox) -> None:
    """Not on the command line, where every local user sees it (ps): ?password_file= or ?password_env=."""
    mailbox.append([make_message(subject="one"), make_message(subject="two")])
    config = write_config(tmp_path / "home", _sqlite(tmp_path), [])
    secret = tmp_path / "imap.password"
    secret.write_text(mailbox.password + "\n")
    bare = mailbox.url("INBOX").replace(f":{mailbox.password}@", "@")
    from_file = invoke(config, "ingest", "--once", "--source", f"{bare}?password_file={secret}&name=file")
    assert "ingested 2 message(s)" in from_file.stdout and "warning" not in from_file.stderr
    from_env = invoke(config, "ingest", "--once", "--source", f"{bare}?password_env=SALES_PW&name=env",
                     env={"SALES_PW": mailbox.password})
    assert "ingested 2 message(s)" in from_env.stdout and "warning" not in from_env.stderr  # the same mail again
    assert status_json(config)["totals"]["messages"] == 2  # under another source name: stored once
    inline = invoke(config, "ingest", "--once", "--source", mailbox.url("INBOX") + "?name=inline")
    assert "ingested 2 message(s)" in inline.stdout
    assert "the password on the command line is visible to every local user" in inline.stderr
    assert "?password_file=FILE or ?password_env=VARIABLE" in inline.stderr
    assert mailbox.password not in inline.stdout + inline.stderr and ":***@" in inline.stderr
    unset = invoke(config, "ingest", "--once", "--source", f"{bare}?password_env=NOT_SET_ANYWHERE", check=False)
    assert unset.returncode == 1 and "environment variable NOT_SET_ANYWHERE is not set" in unset.stderr


def test_idle_push_is_ingested_within_seconds(tmp_path: Path, mailbox: Mailbox) -> None:
    config = write_config(tmp_path, _sqlite(tmp_path), [mailbox.source()], poll_interval=300)
    with running_daemon(config) as daemon:
        _wait_for(lambda: _wait_synced(daemon.db), 60, "the first sync")
        mailbox.append([make_message(subject="pushed")])  # in IDLE, or about to be: the server reports it then
        # long before the next poll (300 s): the push was heard
        _wait_for(lambda: _count(daemon.db, Message) == 1, 60, "the IDLE push to be ingested")


def _wait_synced(db: Database) -> bool:
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).where(FolderCheckpoint.__table__.c.last_success_at.is_not(None))
                            ).scalar_one() > 0


def test_uidvalidity_change_resyncs_without_reimport(tmp_path: Path, mailbox: Mailbox, db_url: str) -> None:
    mailbox.append([make_message(subject=f"m{i}") for i in range(4)])
    config = write_config(tmp_path, db_url, [mailbox.source()])
    daemon = Daemon(config_at(config))
    daemon.ingest_once()
    old_validity, _ = mailbox.uids()
    new_validity = mailbox.server.reset_uidvalidity(mailbox.user, "INBOX", renumber=True)
    assert new_validity != old_validity
    mailbox.append([make_message(subject="after the change")])
    report = Daemon(config_at(config)).ingest_once()
    assert report.errors == {}
    assert _count(daemon.db, Message) == _count(daemon.db, Event, RECEIVED) == 5, "known mail is linked, not again"
    _, uids = mailbox.uids()
    current = [loc for loc in _locations(daemon.db) if loc[0] == new_validity]
    assert current == [(new_validity, uid) for uid in uids]
    assert len(_locations(daemon.db)) == 4 + 5


def test_dovecot_restart_mid_run_is_survived(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = Dovecot(tmp_path / "own-dovecot")
    server.start()
    try:
        user = next(iter(server.users))
        monkeypatch.setenv("MAILD_TEST_IMAP_PASSWORD", server.users[user])
        box = Mailbox(server, user, server.users[user])
        box.append([make_message(subject="before")])
        config = write_config(tmp_path / "home", _sqlite(tmp_path), [box.source()], reconnect_max_delay=1)
        with running_daemon(config) as daemon:
            _wait_for(lambda: _count(daemon.db, Message) == 1, 60, "the first message")
            server.stop()
            _wait_for(lambda: status_json(config)["folders"][0]["last_error"] is not None, 60,
                      "the lost connection to show in status")
            server.start()
            box.append([make_message(subject="after restart")])
            _wait_for(lambda: _count(daemon.db, Message) == 2, 60, "ingestion to resume after the restart")
            _wait_for(lambda: status_json(config)["folders"][0]["last_error"] is None, 60, "the error to clear")
    finally:
        server.close()


def test_sigkill_mid_ingest_then_restart_records_every_location_once(
        tmp_path: Path, mailbox: Mailbox, db_url: str) -> None:
    total = 2000
    mailbox.append([make_message(subject=f"bulk {i}", body=f"body {i} " * 40) for i in range(total)])
    config = write_config(tmp_path, db_url, [mailbox.source()], batch_messages=25)
    cfg = config_at(config)
    db = Database(cfg.database_url)
    db.upgrade()
    command = [sys.executable, "-m", "maild", "--config", str(config), "ingest", "--once"]
    victim = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for(lambda: _count(db, Location) >= 300, 60, "the first ingest to be well under way")
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
    partial = _count(db, Location)
    assert 0 < partial < total, f"the kill should land mid-ingest (had {partial})"
    invoke(config, "ingest", "--once")
    uidvalidity, uids = mailbox.uids()
    assert _locations(db) == [(uidvalidity, uid) for uid in uids]
    assert _count(db, Message) == _count(db, Event, RECEIVED) == total
    db.dispose()


def test_sigterm_stops_run_cleanly(tmp_path: Path, mailbox: Mailbox) -> None:
    mailbox.append([make_message(subject="x")])
    config = write_config(tmp_path, _sqlite(tmp_path), [mailbox.source()])
    proc = subprocess.Popen([sys.executable, "-m", "maild", "--config", str(config), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = Database(config_at(config).database_url)
    try:
        _wait_for(lambda: _count(db, Message) == 1, 60, "the daemon to ingest")
        proc.send_signal(signal.SIGTERM)
        # Not waiting out an IDLE (25 minutes) or a poll: stopped within a deadline only a hang would miss.
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        db.dispose()
    assert proc.returncode == 0, err
    assert "outcome=stored" in err and "stopped" in err


def test_two_daemons_on_one_postgres_never_double_ingest(tmp_path: Path, mailbox: Mailbox, pg_url: str) -> None:
    config = write_config(tmp_path, pg_url, [mailbox.source()], lock_ttl=5)
    logs = [(tmp_path / f"daemon-{index}.log").open("w") for index in range(2)]  # files: a full pipe would block
    daemons = [subprocess.Popen([sys.executable, "-m", "maild", "--config", str(config), "run"],
                                stdout=subprocess.DEVNULL, stderr=log) for log in logs]
    db = Database(config_at(config).database_url)
    try:
        for round_ in range(3):
            mailbox.append([make_message(subject=f"r{round_} {i}") for i in range(150)])
            _wait_for(lambda n=(round_ + 1) * 150: _count(db, Location) >= n,
                      180, "both daemons to catch up")  # generous: timed out at 60 s with the suite in parallel
        time.sleep(1)
    finally:
        for proc in daemons:
            proc.send_signal(signal.SIGTERM)
        for proc in daemons:
            try:
                proc.communicate(timeout=90)  # its threads are joined with 30 s each: generous on a loaded machine
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        for log in logs:
            log.close()
    assert all(proc.returncode == 0 for proc in daemons), [log.name for log in logs]
    uidvalidity, uids = mailbox.uids()
    assert _locations(db) == [(uidvalidity, uid) for uid in uids]
    assert _count(db, Message) == _count(db, Event, RECEIVED) == 450
    db.dispose()


def test_unreachable_server_and_bad_password_are_clear_errors(tmp_path: Path, mailbox: Mailbox) -> None:
    closed = mailbox.source(name="closed", port=1)
    wrong = {**mailbox.source(name="wrong"), "password_env": "MAILD_TEST_WRONG_PW"}
    config = write_config(tmp_path, _sqlite(tmp_path), [closed, wrong])
    result = invoke(config, "ingest", "--once", check=False, env={"MAILD_TEST_WRONG_PW": "nope"})
    assert result.returncode == 1
    assert "error: closed/INBOX: ConnectionRefusedError" in result.stderr
    assert "error: wrong/INBOX: LoginError" in result.stderr
    assert "Traceback" not in result.stderr
    errors = {f["source"]: f["last_error"] for f in status_json(config)["folders"]}
    assert errors["closed"] and errors["wrong"]


@pytest.mark.parametrize("db_kind", ["sqlite", "postgresql"])
def test_corpus_through_imap_nothing_lost(tmp_path: Path, mailbox: Mailbox, db_kind: str,
                                          request: pytest.FixtureRequest) -> None:
    files = [p for p in corpus_files() if p.stat().st_size > 0]  # Dovecot refuses zero-byte APPENDs
    mailbox.append([p.read_bytes() for p in files])
    url = _sqlite(tmp_path) if db_kind == "sqlite" else request.getfixturevalue("pg_url")
    config = write_config(tmp_path, url, [mailbox.source()])
    report = Daemon(config_at(config)).ingest_once()
    assert report.errors == {}
    db = Database(config_at(config).database_url)
    uidvalidity, uids = mailbox.uids()
    assert _locations(db) == [(uidvalidity, uid) for uid in uids]
    loc = Location.__table__
    assert _count(db, Location, loc.c.message_id.is_(None), loc.c.quarantine_id.is_(None)) == 0
    db.dispose()


def test_connection_dropped_during_idle_without_bye_is_noticed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.dovecot import _live_children

    server = Dovecot(tmp_path / "own-dovecot")
    server.start()
    try:
        user, password = next(iter(server.users.items()))
        monkeypatch.setenv("MAILD_TEST_IMAP_PASSWORD", password)
        box = Mailbox(server, user, password)
        config = write_config(tmp_path / "home", _sqlite(tmp_path), [box.source()], reconnect_max_delay=1,
                              poll_interval=300)
        with running_daemon(config) as daemon:
            _wait_for(lambda: _wait_synced(daemon.db), 60, "the first sync")
            time.sleep(1)  # in IDLE now
            assert server._process is not None
            for pid, title in _live_children(server._process.pid).items():
                if title.endswith("/imap"):
                    os.kill(pid, signal.SIGKILL)  # the connection dies without a BYE
            # noticed, recorded, and (once reconnected) cleared again: the time of the error stays
            _wait_for(lambda: status_json(config)["folders"][0]["last_error_at"] is not None, 60,
                      "the dead IDLE connection to be noticed")
            box.append([make_message(subject="after the drop")])
            _wait_for(lambda: _count(daemon.db, Message) == 1, 60, "ingestion after reconnecting")
    finally:
        server.close()
