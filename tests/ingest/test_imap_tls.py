"""IMAP ingestion over real TLS: implicit TLS, STARTTLS, a private CA, verification failures."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from maild.daemon import Daemon
from tests.conftest import Mailbox
from tests.helpers import config_at, invoke, make_message, status_json, write_config
from tests.support.dovecot import Dovecot

PASSWORD_ENV = "MAILD_TEST_IMAP_PASSWORD"


@pytest.fixture(scope="module")
def tls_dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    """One private Dovecot with TLS (STARTTLS and IMAPS, private CA) for this module."""
    server = Dovecot(tmp_path_factory.mktemp("dovecot-tls"), tls=True)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def box(tls_dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> Mailbox:
    """A fresh, empty account on the TLS Dovecot; its password is in $MAILD_TEST_IMAP_PASSWORD."""
    user = f"u{uuid.uuid4().hex[:10]}@example.test"
    password = "pw-" + uuid.uuid4().hex[:8]
    tls_dovecot.add_user(user, password)
    monkeypatch.setenv(PASSWORD_ENV, password)
    return Mailbox(tls_dovecot, user, password)


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'maild.db'}"


def _tls_source(box: Mailbox, **extra: Any) -> dict[str, Any]:
    return box.source(port=box.server.imaps_port, security="tls", **extra)


def _ingest(tmp_path: Path, source: dict[str, Any]) -> tuple[Path, int, dict[str, str]]:
    config = write_config(tmp_path / "home", _sqlite(tmp_path), [source])
    report = Daemon(config_at(config)).ingest_once()
    return config, report.handled, report.errors


def test_implicit_tls_with_private_ca(tmp_path: Path, box: Mailbox) -> None:
    box.append([make_message(subject=f"tls {i}") for i in range(3)])
    _, handled, errors = _ingest(tmp_path, _tls_source(box, ca_file=str(box.server.ca_file)))
    assert (handled, errors) == (3, {})


def test_starttls_with_private_ca(tmp_path: Path, box: Mailbox) -> None:
    box.append([make_message(subject=f"starttls {i}") for i in range(2)])
    source = box.source(security="starttls", ca_file=str(box.server.ca_file))
    assert source["port"] == box.server.port
    _, handled, errors = _ingest(tmp_path, source)
    assert (handled, errors) == (2, {})


def test_unknown_ca_is_a_reported_folder_error(tmp_path: Path, box: Mailbox) -> None:
    box.append([make_message(subject="never fetched")])
    config, handled, errors = _ingest(tmp_path, _tls_source(box, verify_tls=True))
    assert handled == 0
    assert list(errors) == ["mbox/INBOX"]
    assert "certificate verify failed" in errors["mbox/INBOX"].lower(), errors
    status = status_json(config)  # the real `maild status --json`
    assert status["totals"]["messages"] == 0
    assert [(f["source"], f["folder"]) for f in status["folders"]] == [("mbox", "INBOX")]
    last_error = status["folders"][0]["last_error"]
    assert last_error is not None
    assert "certificate verify failed" in last_error.lower(), last_error


def test_verify_tls_false_needs_no_ca(tmp_path: Path, box: Mailbox) -> None:
    box.append([make_message(subject=f"unverified {i}") for i in range(2)])
    _, handled, errors = _ingest(tmp_path, _tls_source(box, verify_tls=False))
    assert (handled, errors) == (2, {})


def test_imaps_source_url_on_the_command_line(tmp_path: Path, box: Mailbox) -> None:
    box.append([make_message(subject=f"cli {i}") for i in range(2)])
    config = write_config(tmp_path / "home", _sqlite(tmp_path), [])
    server = box.server
    url = (f"imaps://{quote(box.user, safe='')}:{quote(box.password, safe='')}@{server.host}:{server.imaps_port}"
           f"/INBOX?ca_file={quote(str(server.ca_file), safe='/')}")
    result = invoke(config, "ingest", "--once", "--source", url, env={PASSWORD_ENV: box.password})
    assert "ingested 2 message(s)" in result.stdout, result.stdout + result.stderr
    assert box.password not in result.stdout + result.stderr, "secrets never logged"
    status = status_json(config)
    assert status["totals"]["messages"] == 2
    assert [f["last_error"] for f in status["folders"]] == [None]


def test_connections_with_the_same_tls_settings_share_one_context(tmp_path: Path, box: Mailbox) -> None:
    """Each TLS context holds its own copy of the CA store (about 0.85 MB): hundreds of folders must not carry
    hundreds of them. A CA file changed on disk is read again; plain connections need none."""
    from maild.config import ImapSourceConfig
    from maild.imap.connection import connect, quietly_logout, tls_context

    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(box.server.ca_file.read_bytes())

    def source(**extra: Any) -> ImapSourceConfig:
        return ImapSourceConfig.model_validate(_tls_source(box, ca_file=str(ca_file), **extra))

    first, second = tls_context(source(folders=["INBOX"]), tmp_path), tls_context(source(folders=["Sent"]), tmp_path)
    assert first is not None and first is second
    assert tls_context(source(verify_tls=False), tmp_path) is not first
    assert tls_context(ImapSourceConfig.model_validate(box.source()), tmp_path) is None
    clients = [connect(source(), tmp_path) for _ in range(2)]  # both connect with the shared context
    for client in clients:
        assert client.noop()
        quietly_logout(client)
    stat = ca_file.stat()
    os.utime(ca_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert tls_context(source(), tmp_path) is not first, "a renewed CA file is read again"
