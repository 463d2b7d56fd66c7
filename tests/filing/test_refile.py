"""Refiling after a triage assignment, against the real Dovecot: prompt while the worker idles, and from the
folder the server really has (not the one the template named)."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from maild.daemon import Daemon
from maild.directory.service import add_thirdparty
from maild.store.db import Database
from maild.store.models import FilingTask, FolderCheckpoint, MessageMatch
from tests.conftest import Mailbox
from tests.helpers import config_at, invoke, write_config
from tests.ingest.test_imap import running_daemon

FILING = {"action": "move", "matched_folder": "Customers/{{ thirdparty.name }}", "triage_folder": "Triage"}


def _mail(sender: str, subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "sales@example.com", subject
    msg["Message-ID"] = f"<{abs(hash((sender, subject)))}@mail.example>"
    msg.set_content("Hello")
    return msg.as_bytes()


def _setup(tmp_path: Path, mailbox: Mailbox, db_url: str) -> tuple[Path, Database]:
    config = write_config(tmp_path, db_url, [mailbox.source(filing=FILING)])
    config.write_text(config.read_text() + "matching:\n  instance_id: inst01\n  own_domains: [example.com]\n")
    db = Database(config_at(config).database_url)
    db.upgrade()
    return config, db


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if condition():
                return time.monotonic() - start
        except DBAPIError:  # the daemon has not created its schema yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _queued_message(db: Database) -> int:
    mm = MessageMatch.__table__
    with db.engine.connect() as conn:
        return conn.execute(select(mm.c.message_id).where(mm.c.status == "unmatched")).scalar_one()


def _synced(db: Database) -> bool:
    with db.engine.connect() as conn:
        return conn.execute(select(FolderCheckpoint.__table__.c.last_success_at)).scalar() is not None


def test_an_assignment_leaves_triage_promptly_while_the_worker_idles(tmp_path: Path, mailbox: Mailbox,
                                                                    db_url: str) -> None:
    config, db = _setup(tmp_path, mailbox, db_url)
    add_thirdparty(db, name="ACME Corp", domains=["acme.example"])
    mailbox.append([_mail("Bob <bob@gmail.com>", "hello from a stranger")])
    with running_daemon(config):
        _wait_for(lambda: mailbox.subjects("Triage") == ["hello from a stranger"], 60, "the mail in Triage")
        _wait_for(lambda: _synced(db), 30, "the pass to end (the worker then idles)")
        invoke(config, "triage", "assign", str(_queued_message(db)), "ACME Corp")
        # No new mail arrives: the idling worker must notice the refile itself (it used to wait for the
        # next IDLE renewal, up to 25 minutes). It looks every FILING_CHECK_SECONDS (5 s).
        _wait_for(lambda: mailbox.subjects("Customers/ACME Corp") == ["hello from a stranger"], 60,
                  "the assigned mail to leave Triage")
    assert mailbox.subjects("Triage") == []


def test_a_refile_starts_from_the_folder_the_server_has(tmp_path: Path, mailbox: Mailbox, db_url: str) -> None:
    """Dovecot's Maildir++ refuses dots: "ACME & Co. KG" was filed into "Customers/ACME & Co KG". Reassigned,
    the mail must be found there, not in the folder the template named."""
    config, db = _setup(tmp_path, mailbox, db_url)
    add_thirdparty(db, name="ACME & Co. KG", domains=["acme.example"])
    add_thirdparty(db, name="Beta GmbH", domains=["beta.example"])
    mailbox.append([_mail("John <john@acme.example>", "actually for Beta")])
    for _ in range(2):  # the filing of the last batch is done by the next pass at the latest
        assert Daemon(config_at(config)).ingest_once().errors == {}
    assert mailbox.subjects("Customers/ACME & Co KG") == ["actually for Beta"]
    with db.engine.connect() as conn:
        (task,) = conn.execute(select(FilingTask.__table__)).all()
    assert (task.target_folder, task.filed_folder) == ("Customers/ACME & Co. KG", "Customers/ACME & Co KG")
    assert "filing: move -> Customers/ACME & Co. KG (on the server: Customers/ACME & Co KG): done" in \
        invoke(config, "explain", str(task.message_id)).stdout

    invoke(config, "triage", "assign", str(task.message_id), "Beta GmbH")
    assert Daemon(config_at(config)).ingest_once().errors == {}
    assert mailbox.subjects("Customers/Beta GmbH") == ["actually for Beta"]
    assert mailbox.subjects("Customers/ACME & Co KG") == []
    with db.engine.connect() as conn:
        refile = conn.execute(select(FilingTask.__table__).where(FilingTask.__table__.c.from_folder.is_not(None))).one()
    assert (refile.status, refile.from_folder, refile.filed_folder) == (
        "done", "Customers/ACME & Co KG", "Customers/Beta GmbH")
