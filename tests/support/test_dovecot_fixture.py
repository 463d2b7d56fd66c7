"""Fast checks that the private Dovecot test server (tests/support/dovecot.py) works."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import imapclient
import pytest

from .dovecot import DEFAULT_USER, Dovecot

pytestmark = pytest.mark.skipif(
    shutil.which("dovecot", path=f"{os.environ.get('PATH', '')}:/usr/sbin") is None,
    reason="dovecot not installed (run scripts/install-test-deps)",
)


def _message(n: int) -> bytes:
    return (
        f"From: sender{n}@example.test\r\n"
        f"To: {DEFAULT_USER}\r\n"
        f"Subject: message {n}\r\n"
        f"Message-ID: <msg-{n}@example.test>\r\n"
        "Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n"
        "\r\n"
        f"Body of message {n}.\r\n"
    ).encode()


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    server = Dovecot(tmp_path / "dovecot")
    server.start()
    try:
        yield server
    finally:
        server.close()


def test_start_login_and_append_many(dovecot: Dovecot) -> None:
    appended = dovecot.append_many(DEFAULT_USER, "INBOX", (_message(n) for n in range(3)))
    assert appended == 3
    with dovecot.client() as imap:
        imap.select_folder("INBOX", readonly=True)
        uids = imap.search("ALL")
        assert len(uids) == 3
        subjects = {
            data[b"BODY[HEADER.FIELDS (SUBJECT)]"].strip()
            for data in imap.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]).values()
        }
    assert subjects == {b"Subject: message 0", b"Subject: message 1", b"Subject: message 2"}


def test_append_many_creates_missing_folder(dovecot: Dovecot) -> None:
    assert dovecot.append_many(DEFAULT_USER, "Archive/2026", [_message(1), _message(2)]) == 2
    with dovecot.client() as imap:
        assert imap.folder_exists("Archive/2026")
        assert imap.folder_status("Archive/2026", [b"MESSAGES"])[b"MESSAGES"] == 2


def test_capabilities_and_special_use(dovecot: Dovecot) -> None:
    with dovecot.client() as imap:
        caps = set(imap.capabilities())
        assert {b"IDLE", b"MOVE", b"UIDPLUS", b"MULTIAPPEND", b"SPECIAL-USE"} <= caps
        assert imap.find_special_folder(b"\\Sent") == "Sent"
        assert imap.find_special_folder(b"\\Trash") == "Trash"


def test_restart_keeps_port_and_mail(dovecot: Dovecot) -> None:
    dovecot.append_many(DEFAULT_USER, "INBOX", [_message(1)])
    port = dovecot.port
    dovecot.restart()
    assert dovecot.port == port
    with dovecot.client() as imap:
        assert imap.folder_status("INBOX", [b"MESSAGES"])[b"MESSAGES"] == 1


def test_stop_closes_port(dovecot: Dovecot) -> None:
    dovecot.stop()
    assert not dovecot.running
    with pytest.raises(OSError), socket.create_connection((dovecot.host, dovecot.port), timeout=1):
        pass


def test_add_user_while_running(dovecot: Dovecot) -> None:
    started = time.monotonic()
    dovecot.add_user("second@example.test", "hunter2")
    assert time.monotonic() - started < 0.5  # new users need no reload wait
    with dovecot.client("second@example.test") as imap:
        assert imap.folder_exists("INBOX")
    # Changing a password (same length, same second) must be picked up as well.
    dovecot.add_user("second@example.test", "hunter3")
    with dovecot.client("second@example.test", "hunter3") as imap:
        assert imap.folder_exists("INBOX")
    with pytest.raises(imapclient.exceptions.LoginError):
        dovecot.client("second@example.test", "hunter2")
    with pytest.raises(imapclient.exceptions.LoginError):
        dovecot.client("nobody@example.test", "x")


def test_survives_root_becoming_private(dovecot: Dovecot) -> None:
    # pytest resets /tmp/pytest-of-<user> to 0700 whenever another session
    # starts; nothing Dovecot's unprivileged processes need may live below it.
    dovecot.root.chmod(0o700)
    dovecot.restart()
    dovecot.add_user("late@example.test", "pw")
    assert dovecot.append_many("late@example.test", "INBOX", [_message(1)]) == 1
    assert (dovecot.root / "mail" / "late@example.test" / "new").is_dir()


def test_close_keeps_mail_under_root(tmp_path: Path) -> None:
    server = Dovecot(tmp_path / "dovecot")
    with server:
        server.append_many(DEFAULT_USER, "INBOX", [_message(1)])
    assert not server.runtime_dir.exists()
    mail = tmp_path / "dovecot" / "mail"
    assert not mail.is_symlink()
    assert len(list((mail / DEFAULT_USER).glob("*/*"))) == 1
    # A new instance on the same root picks the mail up again.
    with Dovecot(tmp_path / "dovecot") as again, again.client() as imap:
        assert imap.folder_status("INBOX", [b"MESSAGES"])[b"MESSAGES"] == 1


@pytest.mark.parametrize("folder", ["INBOX", "Archive/2026"])
def test_reset_uidvalidity_keeps_messages(dovecot: Dovecot, folder: str) -> None:
    dovecot.append_many(DEFAULT_USER, folder, (_message(n) for n in range(3)))
    with dovecot.client() as imap:
        before = imap.select_folder(folder, readonly=True)
        ids_before = imap.fetch(imap.search("ALL"), ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])

    new = dovecot.reset_uidvalidity(DEFAULT_USER, folder)

    assert new != before[b"UIDVALIDITY"]
    with dovecot.client() as imap:
        after = imap.select_folder(folder, readonly=True)
        assert after[b"UIDVALIDITY"] == new
        assert after[b"EXISTS"] == 3
        ids_after = imap.fetch(imap.search("ALL"), ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
    assert ids_after == ids_before


def test_reset_uidvalidity_renumber_changes_uids(dovecot: Dovecot) -> None:
    dovecot.append_many(DEFAULT_USER, "INBOX", (_message(n) for n in range(3)))
    with dovecot.client() as imap:
        imap.select_folder("INBOX")
        first = imap.search("ALL")[0]
        imap.add_flags([first], [b"\\Seen"])
        old = imap.folder_status("INBOX", [b"UIDVALIDITY"])[b"UIDVALIDITY"]

    first_reset = dovecot.reset_uidvalidity(DEFAULT_USER, "INBOX", renumber=True)
    second_reset = dovecot.reset_uidvalidity(DEFAULT_USER, "INBOX", renumber=True)

    assert len({old, first_reset, second_reset}) == 3
    with dovecot.client() as imap:
        imap.select_folder("INBOX", readonly=True)
        uids = imap.search("ALL")
        assert uids == [7, 8, 9]
        assert imap.search("SEEN") == [7]


def test_two_instances_at_once(tmp_path: Path) -> None:
    first = Dovecot(tmp_path / "one")
    second = Dovecot(tmp_path / "two", users={"other@example.test": "pw"})
    with first, second:
        assert first.port != second.port
        first.append_many(DEFAULT_USER, "INBOX", [_message(1)])
        with first.client() as imap:
            assert imap.folder_status("INBOX", [b"MESSAGES"])[b"MESSAGES"] == 1
        with second.client() as imap:
            assert imap.folder_status("INBOX", [b"MESSAGES"])[b"MESSAGES"] == 0
        with pytest.raises(imapclient.exceptions.LoginError):
            second.client(DEFAULT_USER, "secret")


def test_idle_sees_new_mail(dovecot: Dovecot) -> None:
    with dovecot.client() as imap:
        assert imap.has_capability("IDLE")
        imap.select_folder("INBOX")
        imap.idle()
        try:
            dovecot.append_many(DEFAULT_USER, "INBOX", [_message(1)])
            responses = imap.idle_check(timeout=5)
        finally:
            imap.idle_done()
    assert (1, b"EXISTS") in responses
