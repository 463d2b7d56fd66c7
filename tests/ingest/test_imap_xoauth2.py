"""IMAP XOAUTH2 against a real Dovecot whose oauth2 passdb checks each token with a local introspection server
(RFC 7662), as Gmail and Microsoft 365 accounts are reached: the token comes from a file a helper keeps fresh."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from maild.daemon import Daemon
from tests.helpers import config_at, make_message, write_config
from tests.support.dovecot import Dovecot
from tests.support.http_server import LocalHttpServer, Reply, Request


class Introspection:
    """POST token=... -> {"active": true, "username": ...} for the tokens it knows, {"active": false} else."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.asked: list[str] = []
        self.http = LocalHttpServer(self._answer)
        self.url = f"{self.http.url}/introspect"

    def _answer(self, request: Request) -> Reply:
        token = parse_qs(request.body.decode()).get("token", [""])[0]
        self.asked.append(token)
        user = self.tokens.get(token)
        body = {"active": True, "username": user} if user else {"active": False}
        return Reply(200, json.dumps(body).encode(), "application/json")


@pytest.fixture(scope="module")
def introspection() -> Iterator[Introspection]:
    server = Introspection()
    try:
        yield server
    finally:
        server.http.close()


@pytest.fixture(scope="module")
def oauth_dovecot(tmp_path_factory: pytest.TempPathFactory, introspection: Introspection) -> Iterator[Dovecot]:
    server = Dovecot(tmp_path_factory.mktemp("dovecot-oauth2"), oauth2_introspection_url=introspection.url)
    server.start()
    try:
        yield server
    finally:
        server.close()


def test_xoauth2_login_with_a_token_file_a_helper_refreshes(tmp_path: Path, oauth_dovecot: Dovecot,
                                                           introspection: Introspection) -> None:
    user = f"u{uuid.uuid4().hex[:10]}@example.test"
    oauth_dovecot.add_user(user, "pw-" + uuid.uuid4().hex[:8])  # the account; maild never sees this password
    oauth_dovecot.append_many(user, "INBOX", [make_message(subject=f"oauth {i}") for i in range(3)])
    token_file = tmp_path / "imap.token"
    token_file.write_text("ya29.first\n")
    introspection.tokens["ya29.first"] = user
    source = {"name": "gmail", "type": "imap", "host": oauth_dovecot.host, "port": oauth_dovecot.port,
              "security": "plain", "username": user, "auth": "xoauth2", "password_file": str(token_file),
              "timeout": 10}
    config = config_at(write_config(tmp_path / "home", f"sqlite:///{tmp_path / 'maild.db'}", [source]))
    report = Daemon(config).ingest_once()
    assert (report.handled, report.errors) == (3, {})
    assert "ya29.first" in introspection.asked  # Dovecot asked the introspection endpoint about this token

    del introspection.tokens["ya29.first"]  # expired; the helper has not refreshed the file yet
    oauth_dovecot.append_many(user, "INBOX", [make_message(subject="later")])
    report = Daemon(config).ingest_once()
    assert report.handled == 0 and list(report.errors) == ["gmail/INBOX"]
    assert "ya29" not in str(report.errors), "tokens are never logged"
    assert "authenticat" in str(report.errors).lower(), report.errors

    token_file.write_text("ya29.second\n")  # refreshed: read again at the next login
    introspection.tokens["ya29.second"] = user
    report = Daemon(config).ingest_once()
    assert (report.handled, report.errors) == (1, {})
