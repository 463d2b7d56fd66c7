"""Fast checks that the private Dovecot test server (tests/support/dovecot.py) works."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import imapclient
import pytest

from .dovecot import DEFAULT_USER, Dovecot, DovecotError

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
            responses: list = []
            deadline = time.monotonic() + 60  # generous: a loaded machine, not a slow Dovecot, is what takes long
            while (1, b"EXISTS") not in responses and time.monotonic() < deadline:
                responses += imap.idle_check(timeout=5)
        finally:
            imap.idle_done()
    assert (1, b"EXISTS") in responses


def test_stop_is_fast_and_says_bye_to_idle_clients(dovecot: Dovecot) -> None:
    # Dovecot's master alone would leave an IDLE-ing imap process running for
    # several seconds after SIGTERM (and only then send BYE).
    with dovecot.client() as imap:
        imap.select_folder("INBOX", readonly=True)
        imap.idle()
        started = time.monotonic()
        dovecot.stop()
        assert time.monotonic() - started < 3
        assert (b"BYE", b"Server", b"shutting", b"down.") in imap.idle_check(timeout=2)


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    server = Dovecot(tmp_path_factory.mktemp("dovecot-tls"), tls=True)
    server.start()
    try:
        yield server
    finally:
        server.close()


def test_default_instance_has_no_tls(dovecot: Dovecot) -> None:
    assert not dovecot.tls
    with imapclient.IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=5) as imap:
        assert not imap.has_capability("STARTTLS")
    with pytest.raises(DovecotError):
        _ = dovecot.imaps_port
    with pytest.raises(DovecotError):
        _ = dovecot.ca_file
    assert "ssl = no" in dovecot.config_path.read_text()


def test_tls_implicit_login_verified_with_ca(tls_dovecot: Dovecot) -> None:
    assert tls_dovecot.imaps_port != tls_dovecot.port
    assert tls_dovecot.ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
    context = ssl.create_default_context(cafile=str(tls_dovecot.ca_file))
    with imapclient.IMAPClient(
        tls_dovecot.host, port=tls_dovecot.imaps_port, ssl=True, ssl_context=context, timeout=5
    ) as imap:
        imap.login(DEFAULT_USER, tls_dovecot.users[DEFAULT_USER])
        assert imap.folder_exists("INBOX")
    # The certificate names localhost as well as 127.0.0.1.
    with (
        socket.create_connection((tls_dovecot.host, tls_dovecot.imaps_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.recv(100).startswith(b"* OK")


def test_tls_starttls_on_plain_port(tls_dovecot: Dovecot) -> None:
    with imapclient.IMAPClient(tls_dovecot.host, port=tls_dovecot.port, ssl=False, timeout=5) as imap:
        assert imap.has_capability("STARTTLS")
        imap.starttls(ssl.create_default_context(cafile=str(tls_dovecot.ca_file)))
        assert isinstance(imap.socket(), ssl.SSLSocket)
        imap.login(DEFAULT_USER, tls_dovecot.users[DEFAULT_USER])
        assert imap.folder_exists("INBOX")


def test_tls_server_still_allows_plain_login(tls_dovecot: Dovecot) -> None:
    assert tls_dovecot.append_many(DEFAULT_USER, "INBOX", [_message(1)]) == 1
    with tls_dovecot.client() as imap:
        assert not isinstance(imap.socket(), ssl.SSLSocket)
        assert imap.folder_status("INBOX", [b"MESSAGES"])[b"MESSAGES"] >= 1
    for security in ("tls", "starttls"):
        with tls_dovecot.client(security=security) as imap:
            assert isinstance(imap.socket(), ssl.SSLSocket)


def test_tls_default_trust_store_rejects_private_ca(tls_dovecot: Dovecot) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        imapclient.IMAPClient(tls_dovecot.host, port=tls_dovecot.imaps_port, ssl=True, timeout=5)
    with (
        imapclient.IMAPClient(tls_dovecot.host, port=tls_dovecot.port, ssl=False, timeout=5) as imap,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        imap.starttls(ssl.create_default_context())


def test_tls_restart_keeps_ports_and_certificate(tls_dovecot: Dovecot) -> None:
    ports, ca = (tls_dovecot.port, tls_dovecot.imaps_port), tls_dovecot.ca_file.read_bytes()
    tls_dovecot.restart()
    assert (tls_dovecot.port, tls_dovecot.imaps_port) == ports
    assert tls_dovecot.ca_file.read_bytes() == ca
    with tls_dovecot.client(security="tls") as imap:
        assert imap.folder_exists("INBOX")
