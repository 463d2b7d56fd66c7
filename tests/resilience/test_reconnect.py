"""Issue 11 item 22: after an IMAP or database outage, ingest resumes within seconds of the server's return.

The waiting policy is checked deterministically (jitter pinned to its upper bound); resumption is checked end
to end against a private Dovecot that is stopped and started again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from maild.backoff import ReconnectBackoff
from maild.config import IngestConfig, MaildirSourceConfig
from maild.daemon import Daemon
from maild.ingest.context import IngestContext
from maild.ingest.sources.imap import ImapFolderWorker
from maild.ingest.sources.maildir import MaildirFolderWorker
from maild.store.checkpoints import FolderRef
from maild.store.models import Message
from tests.conftest import Mailbox
from tests.helpers import config_at, make_message, write_config
from tests.support.dovecot import Dovecot
from tests.support.waiting import wait_for


def _upper(low: float, high: float) -> float:
    return high


def test_waits_are_capped_and_start_short_again_once_the_server_answers() -> None:
    backoff = ReconnectBackoff(cap=8, slow_cap=300, jitter=_upper)
    outage = [backoff.failed_after(connected=False) for _ in range(7)]
    assert outage == [1, 2, 4, 8, 8, 8, 8], "doubling, capped: a server back is tried within 8 s"
    backoff.connected()  # reconnected (and the database answered): not only after a whole pass
    assert backoff.attempt == 0
    assert backoff.failed_after(connected=True) == 1, "the next outage is retried at once"
    # A failure that keeps coming after good reconnects (a full disk) keeps backing off.
    backoff.connected()
    assert backoff.failed_after(connected=True) == 2
    backoff.connected()
    assert backoff.failed_after(connected=True) == 4
    backoff.succeeded()
    assert backoff.failed_after(connected=True) == 1


def test_a_refused_login_backs_off_longer() -> None:
    backoff = ReconnectBackoff(cap=8, slow_cap=300, jitter=_upper)
    waits = [backoff.failed_after(connected=False, slow=True) for _ in range(11)]
    assert waits[-3:] == [256, 300, 300]


def test_the_default_cap_keeps_resumption_within_ten_seconds() -> None:
    settings = IngestConfig()
    assert settings.reconnect_max_delay <= 8 < 10
    backoff = ReconnectBackoff(settings.reconnect_max_delay, settings.login_retry_max_delay, jitter=_upper)
    assert max(backoff.failed_after(connected=False) for _ in range(50)) <= 8


def test_idle_ends_to_look_at_the_folder_after_idle_check_interval(tmp_path: Path, mailbox: Mailbox) -> None:
    mailbox.append([make_message(subject="first")])
    interval = 3.0
    config = config_at(write_config(tmp_path, f"sqlite:///{tmp_path / 'maild.db'}", [mailbox.source()],
                                    idle_check_interval=interval))
    daemon = Daemon(config)
    daemon.db.upgrade()
    pipeline = daemon.start_pool()
    try:
        worker = daemon.workers(daemon.context(pipeline))[0]
        assert isinstance(worker, ImapFolderWorker)
        worker.open()
        try:
            assert worker.take_lease() and worker.sync_once() == 1
            began = time.monotonic()
            idling = threading.Thread(target=worker.wait_for_change, daemon=True)
            idling.start()
            idling.join(60)
            assert not idling.is_alive(), "after idle_check_interval the IDLE ends and the folder is selected again"
            assert time.monotonic() - began >= interval, "no change, no stop: the IDLE lasts the whole interval"
            assert not daemon.stop.is_set()
            assert worker.sync_once() == 0  # the connection is fine for the pass that follows
        finally:
            worker.close()
            worker.release_lease()
    finally:
        daemon.shutdown()


class DeliveryDuringPass(ImapFolderWorker):
    """Delivers a message into the folder right after the pass's SELECT (as a mail server may at any moment)."""

    deliver: Callable[[], None] | None = None

    def _checkpoint_for(self, uidvalidity: int) -> int:
        if self.deliver is not None:
            self.deliver()
            self.deliver = None
        return super()._checkpoint_for(uidvalidity)


def test_mail_delivered_during_a_pass_is_fetched_without_waiting_for_the_next_look(
        tmp_path: Path, mailbox: Mailbox) -> None:
    mailbox.append([make_message(subject="first")])
    config = config_at(write_config(tmp_path, f"sqlite:///{tmp_path / 'maild.db'}", [mailbox.source()],
                                    idle_check_interval=3600))
    daemon = Daemon(config)
    daemon.db.upgrade()
    pipeline = daemon.start_pool()
    try:
        plain = daemon.workers(daemon.context(pipeline))[0]
        assert isinstance(plain, ImapFolderWorker)
        worker = DeliveryDuringPass(plain.ctx, plain.ref, plain.cfg, plain.filing)
        worker.open()
        try:
            assert worker.take_lease() and worker.sync_once() == 1
            worker.deliver = lambda: mailbox.append([make_message(subject="during the pass")])
            worker.sync_once()  # the server tells of the new message at the end of a command of this pass
            waiting = threading.Thread(target=worker.wait_for_change, daemon=True)
            waiting.start()
            waiting.join(30)
            if waiting.is_alive():  # idling: let it end, so that the connection can be closed
                daemon.stop.set()
                waiting.join(30)
            assert not daemon.stop.is_set(), "the announced message must be looked for now, not in an hour"
            worker.sync_once()
            assert _messages(daemon) == 2
        finally:
            worker.close()
            worker.release_lease()
    finally:
        daemon.shutdown()


def _messages(daemon: Daemon) -> int:
    with daemon.db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Message.__table__)).scalar_one())


def test_ingest_resumes_after_the_imap_server_was_away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = Dovecot(tmp_path / "own-dovecot")
    server.start()
    try:
        user = next(iter(server.users))
        monkeypatch.setenv("MAILD_TEST_IMAP_PASSWORD", server.users[user])
        box = Mailbox(server, user, server.users[user])
        box.append([make_message(subject="before")])
        config = write_config(tmp_path / "home", f"sqlite:///{tmp_path / 'maild.db'}", [box.source()],
                              reconnect_max_delay=8)
        daemon = Daemon(config_at(config))
        thread = threading.Thread(target=daemon.run, daemon=True)
        thread.start()
        try:
            wait_for(lambda: daemon._workers is not None and _messages(daemon) == 1, what="the first message")
            worker = daemon._workers[0]
            server.stop()
            wait_for(lambda: worker.backoff.attempt >= 3, what="several failed reconnects")
            assert worker.health.view().state == "retrying"
            server.start()
            box.append([make_message(subject="after the outage")])
            wait_for(lambda: _messages(daemon) == 2, what="ingest to resume")
            wait_for(lambda: worker.backoff.attempt == 0, what="the backoff to start short again")
            wait_for(lambda: worker.health.view().state == "running", what="the worker to say it runs again")
        finally:
            daemon.stop.set()
            thread.join(30)
    finally:
        server.close()


class GatedMaildirWorker(MaildirFolderWorker):
    """A Maildir worker whose passes wait until the test opens the gate (to look at it mid-pass)."""

    def __init__(self, ctx: IngestContext, ref: FolderRef, cfg: MaildirSourceConfig, gate: threading.Event) -> None:
        super().__init__(ctx, ref, cfg)
        self.gate = gate
        self.in_pass = threading.Event()

    def sync_once(self) -> int:
        self.in_pass.set()
        self.gate.wait(60)
        return super().sync_once()


def test_the_board_shows_running_at_the_reconnect_not_only_after_a_pass(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    config = config_at(write_config(tmp_path, f"sqlite:///{tmp_path / 'maild.db'}",
                                    [{"name": "local", "type": "maildir", "path": str(maildir)}],
                                    reconnect_max_delay=1))
    daemon = Daemon(config)
    daemon.db.upgrade()
    pipeline = daemon.start_pool()
    gate = threading.Event()
    try:
        ctx = daemon.context(pipeline)
        source = config.sources[0]
        assert isinstance(source, MaildirSourceConfig)
        worker = GatedMaildirWorker(ctx, daemon.workers(ctx)[0].ref, source, gate)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            wait_for(lambda: worker.backoff.attempt >= 2, what="the missing Maildir to fail twice")
            assert worker.health.view().state == "retrying"
            for sub in ("new", "cur", "tmp"):
                (maildir / sub).mkdir(parents=True)
            wait_for(worker.in_pass.is_set, what="the worker to reconnect and start a pass")
            assert worker.health.view().state == "running", "running once the source answers, before the pass"
            assert worker.backoff.attempt == 0
        finally:
            gate.set()
            daemon.stop.set()
            thread.join(30)
        assert not thread.is_alive()
    finally:
        daemon.shutdown()
