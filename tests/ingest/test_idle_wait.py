"""Waiting in IDLE (maild/imap/idle.py) against a real Dovecot, plain and TLS: the server's news, the daemon's stop
and a worker's own wake-up end the wait at once; a connection killed without a BYE is reported, not waited on."""

from __future__ import annotations

import os
import select
import signal
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
from imapclient import IMAPClient

from maild.imap.idle import wait_in_idle
from maild.wakeup import StopFlag, Wakeup, wait_for_wakeup
from tests.helpers import make_message
from tests.support.dovecot import Dovecot, _live_children

LONG = 600.0  # a wait that only an event may end within the test's deadlines
SECURITIES = ["plain", "tls"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    """A Dovecot of this module's own (plain and IMAPS): one test kills its IMAP processes."""
    dovecot = Dovecot(tmp_path_factory.mktemp("dovecot-idle"), tls=True)
    dovecot.start()
    try:
        yield dovecot
    finally:
        dovecot.close()


@pytest.fixture
def account(server: Dovecot) -> tuple[str, str]:
    user, password = f"u{uuid.uuid4().hex[:10]}@example.test", "pw-" + uuid.uuid4().hex[:8]
    server.add_user(user, password)
    server.append_many(user, "INBOX", [make_message(subject="first")])
    return user, password


def _idling(server: Dovecot, account: tuple[str, str], security: str = "plain") -> IMAPClient:
    client = server.client(*account, security=security)  # type: ignore[arg-type]
    client.select_folder("INBOX")
    client.idle()
    return client


def _in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("security", SECURITIES)
def test_the_servers_news_ends_the_wait(server: Dovecot, account: tuple[str, str], security: str) -> None:
    client = _idling(server, account, security)
    try:
        thread, outcome = _in_thread(lambda: wait_in_idle(client, [], LONG))
        server.append_many(account[0], "INBOX", [make_message(subject="second")])
        thread.join(120)
        assert not thread.is_alive(), "a new message ends the IDLE wait"
        [news] = outcome
        assert isinstance(news, list) and (2, b"EXISTS") in news
        client.idle_done()
        assert client.noop()  # the connection goes on
    finally:
        client.logout()


def test_lines_already_in_the_read_buffer_are_not_left_waiting_for_the_next_packet(
        server: Dovecot, account: tuple[str, str]) -> None:
    client = _idling(server, account)
    try:
        sock = client.socket()
        server.append_many(account[0], "INBOX", [make_message(subject="second")])
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        assert poller.poll(60_000), "the server tells of the new message"
        client._imap.file.peek(1)  # the connection's reader takes what arrived into its buffer
        if poller.poll(0):  # some of it is still on the socket: this run cannot show the buffered case
            pytest.skip("the server's lines came in two packets")
        thread, outcome = _in_thread(lambda: wait_in_idle(client, [], LONG))
        thread.join(120)
        assert not thread.is_alive(), "the EXISTS in the buffer ends the wait without another packet"
        assert (2, b"EXISTS") in outcome[0]  # type: ignore[operator]
        client.idle_done()
    finally:
        client.logout()


def test_the_daemons_stop_wakes_every_waiter_at_once(server: Dovecot, account: tuple[str, str]) -> None:
    stop = StopFlag()
    clients = [_idling(server, account) for _ in range(4)]
    try:
        waiters = [_in_thread(lambda c=client: wait_in_idle(c, [stop.wakeup], LONG)) for client in clients]
        stop.set()
        for thread, _ in waiters:
            thread.join(60)
        assert [thread.is_alive() for thread, _ in waiters] == [False] * 4, "one stop wakes them all"
        assert [outcome for _, outcome in waiters] == [[[]]] * 4  # woken: no news from the server
        for client in clients:
            client.idle_done()
    finally:
        for client in clients:
            client.logout()


def test_a_workers_wakeup_ends_only_its_own_wait(server: Dovecot, account: tuple[str, str]) -> None:
    stop, wakes = StopFlag(), [Wakeup(), Wakeup()]
    clients = [_idling(server, account) for _ in wakes]
    try:
        waiters = [_in_thread(lambda c=client, w=wake: wait_in_idle(c, [stop.wakeup, w], LONG))
                   for client, wake in zip(clients, wakes, strict=True)]
        wakes[0].set()
        waiters[0][0].join(60)
        assert not waiters[0][0].is_alive() and waiters[0][1] == [[]]
        assert waiters[1][0].is_alive(), "the other worker goes on waiting"
        stop.set()
        waiters[1][0].join(60)
        assert not waiters[1][0].is_alive()
        for client in clients:
            client.idle_done()
    finally:
        for client in clients:
            client.logout()


@pytest.mark.parametrize("security", SECURITIES)
def test_a_connection_killed_without_bye_is_reported(server: Dovecot, account: tuple[str, str],
                                                       security: str) -> None:
    client = _idling(server, account, security)
    try:
        thread, outcome = _in_thread(lambda: wait_in_idle(client, [], LONG))
        assert server._process is not None
        for pid, title in _live_children(server._process.pid).items():
            if title.endswith("/imap"):
                os.kill(pid, signal.SIGKILL)
        thread.join(120)
        assert not thread.is_alive(), "a dead connection ends the wait"
        [result] = outcome
        # Over TLS the login process that carried the session may still say BYE; plain, the socket just closes.
        assert isinstance(result, ConnectionError) or any(r[0] == b"BYE" for r in result), result  # type: ignore
    finally:
        client.shutdown()


def test_a_wakeup_is_readable_while_set() -> None:
    wake = Wakeup()
    assert not wait_for_wakeup([wake], 0)
    thread, outcome = _in_thread(lambda: wait_for_wakeup([wake], LONG))
    wake.set()
    thread.join(60)
    assert outcome == [True] and wake.is_set()
    assert wait_for_wakeup([wake], 0), "it stays set for every later waiter"
    wake.clear()
    assert not wake.is_set() and not wait_for_wakeup([wake], 0)
    wake.set()
    wake.set()  # twice is once: one clear takes it back
    wake.clear()
    assert not wait_for_wakeup([wake], 0)
