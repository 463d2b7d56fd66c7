"""SmtpTransport against a real aiosmtpd server speaking TLS: STARTTLS, implicit TLS, verification and AUTH.

The server certificate (for 127.0.0.1 / localhost) is signed by a private CA made with the openssl command,
the same way the Dovecot test server makes its own (tests/support/dovecot.py).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from base64 import b64decode
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from maild.config import Config, SmtpTransportConfig
from maild.outbound.sender import build_transport
from maild.outbound.smtp import Delivered, Outcome, PermFail, SmtpTransport, TempFail
from tests.outbound.conftest import SinkHandler, free_port
from tests.outbound.helpers import make_raw
from tests.support.dovecot import _make_certificates

USER = "maild"
PASSWORD = "s3cret"
WRONG_PASSWORD = "not-the-s3cret-pw"
SENDER = "sales@example.test"
RECIPIENT = "anna@customer.example"


@dataclass(frozen=True)
class Certs:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(*_make_certificates(tmp_path_factory.mktemp("smtp-tls")))


@dataclass
class TlsSinkHandler(SinkHandler):
    """SinkHandler that also records, per DATA, whether the session was encrypted (the TLS cipher or None)."""

    ciphers: list[object] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):
        self.ciphers.append(server.transport.get_extra_info("cipher"))
        return await super().handle_DATA(server, session, envelope)


@dataclass
class OAuthSinkHandler(TlsSinkHandler):
    """Also speaks AUTH XOAUTH2 as Gmail does: a good token is accepted; a bad one gets a base64 JSON challenge,
    then (after the client's empty answer) 535."""

    tokens: set[str] = field(default_factory=set)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (user, token) as presented

    async def auth_XOAUTH2(self, server, args):
        fields_ = dict(part.split("=", 1) for part in b64decode(args[1]).decode().split("\x01") if "=" in part)
        user, token = fields_.get("user", ""), fields_.get("auth", "").removeprefix("Bearer ")
        self.seen.append((user, token))
        if user == USER and token in self.tokens:
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        await server.challenge_auth(json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"}))
        return AuthResult(success=False, handled=False)


@dataclass
class TlsSink:
    handler: TlsSinkHandler
    port: int
    logins: list[tuple[bytes, bool]]

    def transport(self, security: str, password: str | None = None, *, ca_file: Path | None = None,
                  **extra: object) -> SmtpTransport:
        cfg = SmtpTransportConfig(type="smtp", host="127.0.0.1", port=self.port, security=security, timeout=5,
                                  **extra)
        return SmtpTransport(cfg, password, ca_file=str(ca_file) if ca_file else None)


def _authenticator(logins: list[tuple[bytes, bool]]):
    def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode()
              and auth_data.password == PASSWORD.encode())
        logins.append((auth_data.login if isinstance(auth_data, LoginPassword) else b"", ok))
        # handled=False: aiosmtpd itself answers a failure with 535 (handled=True, the default, sends nothing).
        return AuthResult(success=ok, handled=False)

    return authenticate


def _serve(certs: Certs, *, implicit: bool, auth: bool = False,
           handler: TlsSinkHandler | None = None) -> Iterator[TlsSink]:
    handler = handler or TlsSinkHandler()
    logins: list[tuple[bytes, bool]] = []
    port = free_port()
    kwargs: dict[str, object] = {}
    if implicit:
        kwargs["ssl_context"] = certs.server_context()
    else:
        kwargs.update(tls_context=certs.server_context(), require_starttls=True)
    if auth:
        kwargs.update(authenticator=_authenticator(logins), auth_require_tls=True, auth_required=True)
    controller = Controller(handler, hostname="127.0.0.1", port=port, data_size_limit=0, **kwargs)
    controller.start()
    try:
        yield TlsSink(handler, port, logins)
    finally:
        controller.stop()


@pytest.fixture
def starttls_sink(certs: Certs) -> Iterator[TlsSink]:
    yield from _serve(certs, implicit=False)


@pytest.fixture
def implicit_tls_sink(certs: Certs) -> Iterator[TlsSink]:
    yield from _serve(certs, implicit=True)


@pytest.fixture
def auth_sink(certs: Certs) -> Iterator[TlsSink]:
    yield from _serve(certs, implicit=False, auth=True)


@pytest.fixture
def oauth_sink(certs: Certs) -> Iterator[TlsSink]:
    yield from _serve(certs, implicit=False, auth=True, handler=OAuthSinkHandler())


def _send(transport: SmtpTransport, key: str = "tls1") -> tuple[Outcome, list[int]]:
    started: list[int] = []

    async def on_data_started(outbox_id: int, _connection: str) -> None:
        started.append(outbox_id)

    async def run() -> Outcome:
        try:
            return await transport.send(1, SENDER, [RECIPIENT], make_raw(key), on_data_started)
        finally:
            await transport.close()

    return asyncio.run(run()), started


def _text(outcome: Outcome) -> str:
    return repr(outcome)


def _assert_delivered_over_tls(sink: TlsSink, outcome: Outcome, started: list[int], key: str = "tls1") -> None:
    assert isinstance(outcome, Delivered), outcome
    assert outcome.reply.startswith("250"), outcome
    assert started == [1]
    assert len(sink.handler.received) == 1
    got = sink.handler.received[0]
    assert got.sender == SENDER
    assert got.recipients == [RECIPIENT]
    assert got.subject == f"offer {key}"
    assert sink.handler.ciphers and all(c is not None for c in sink.handler.ciphers), sink.handler.ciphers


# --- 1. STARTTLS ----------------------------------------------------------------------------------------------------


def test_starttls_with_private_ca_delivers(starttls_sink: TlsSink, certs: Certs) -> None:
    outcome, started = _send(starttls_sink.transport("starttls", ca_file=certs.ca_file))
    _assert_delivered_over_tls(starttls_sink, outcome, started)


def test_starttls_ca_file_from_config_delivers(starttls_sink: TlsSink, certs: Certs) -> None:
    cfg = SmtpTransportConfig(type="smtp", host="127.0.0.1", port=starttls_sink.port, security="starttls",
                              timeout=5, ca_file=str(certs.ca_file))
    outcome, started = _send(SmtpTransport(cfg, None))
    _assert_delivered_over_tls(starttls_sink, outcome, started)


def test_plain_against_require_starttls_server_is_refused(starttls_sink: TlsSink) -> None:
    outcome, started = _send(starttls_sink.transport("plain"))
    assert not isinstance(outcome, Delivered), outcome
    assert started == []
    assert starttls_sink.handler.received == []


# --- 2. Implicit TLS ------------------------------------------------------------------------------------------------


def test_implicit_tls_with_private_ca_delivers(implicit_tls_sink: TlsSink, certs: Certs) -> None:
    outcome, started = _send(implicit_tls_sink.transport("tls", ca_file=certs.ca_file))
    _assert_delivered_over_tls(implicit_tls_sink, outcome, started)


def test_implicit_tls_reuses_connection_for_second_message(implicit_tls_sink: TlsSink, certs: Certs) -> None:
    transport = implicit_tls_sink.transport("tls", ca_file=certs.ca_file, max_connections=1)

    async def ignore(_outbox_id: int, _connection: str) -> None:
        return None

    async def run() -> list[Outcome]:
        try:
            return [await transport.send(n, SENDER, [RECIPIENT], make_raw(f"m{n}"), ignore)
                    for n in (1, 2)]
        finally:
            await transport.close()

    outcomes = asyncio.run(run())
    assert all(isinstance(o, Delivered) for o in outcomes), outcomes
    assert [r.subject for r in implicit_tls_sink.handler.received] == ["offer m1", "offer m2"]
    assert implicit_tls_sink.handler.connections == 1


# --- 3. Certificate verification ------------------------------------------------------------------------------------


def _assert_certificate_failure(sink: TlsSink, outcome: Outcome, started: list[int]) -> None:
    assert isinstance(outcome, TempFail), outcome
    assert "certificate" in outcome.reason.lower(), outcome
    assert started == []
    assert sink.handler.received == []


def test_implicit_tls_unknown_ca_is_rejected(implicit_tls_sink: TlsSink) -> None:
    outcome, started = _send(implicit_tls_sink.transport("tls"))
    _assert_certificate_failure(implicit_tls_sink, outcome, started)


def test_starttls_unknown_ca_is_rejected(starttls_sink: TlsSink) -> None:
    outcome, started = _send(starttls_sink.transport("starttls"))
    _assert_certificate_failure(starttls_sink, outcome, started)


def test_implicit_tls_without_verification_delivers(implicit_tls_sink: TlsSink) -> None:
    outcome, started = _send(implicit_tls_sink.transport("tls", verify_tls=False))
    _assert_delivered_over_tls(implicit_tls_sink, outcome, started)


def test_starttls_without_verification_delivers(starttls_sink: TlsSink) -> None:
    outcome, started = _send(starttls_sink.transport("starttls", verify_tls=False))
    _assert_delivered_over_tls(starttls_sink, outcome, started)


def test_hostname_mismatch_is_rejected(certs: Certs) -> None:
    # The certificate names 127.0.0.1 and localhost only; 127.0.0.2 (also loopback on Linux) is not on it.
    handler = TlsSinkHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.2", port=port, ssl_context=certs.server_context())
    try:
        controller.start()
    except Exception as exc:
        controller.stop(no_assert=True)
        pytest.skip(f"cannot listen on 127.0.0.2: {exc}")
    try:
        cfg = SmtpTransportConfig(type="smtp", host="127.0.0.2", port=port, security="tls", timeout=5)
        outcome, started = _send(SmtpTransport(cfg, None, ca_file=str(certs.ca_file)))
        assert isinstance(outcome, TempFail), outcome
        assert "certificate" in outcome.reason.lower(), outcome
        assert started == []
        assert handler.received == []
    finally:
        controller.stop()


# --- 4. AUTH over STARTTLS ------------------------------------------------------------------------------------------


def test_auth_with_right_password_delivers(auth_sink: TlsSink, certs: Certs) -> None:
    outcome, started = _send(auth_sink.transport("starttls", PASSWORD, ca_file=certs.ca_file, username=USER))
    _assert_delivered_over_tls(auth_sink, outcome, started)
    assert (USER.encode(), True) in auth_sink.logins
    assert PASSWORD not in _text(outcome)


def test_auth_with_wrong_password_is_refused_without_leaking_it(auth_sink: TlsSink, certs: Certs) -> None:
    outcome, started = _send(auth_sink.transport("starttls", WRONG_PASSWORD, ca_file=certs.ca_file, username=USER))
    # smtp.py maps a refused AUTH (SMTPResponseException outside the transaction) to TempFail: a config problem.
    assert isinstance(outcome, TempFail), outcome
    assert not isinstance(outcome, (Delivered, PermFail))
    assert "535" in outcome.reason, outcome  # the server's reply: 535 5.7.8 Authentication credentials invalid
    assert "authentication" in outcome.reason.lower(), outcome
    assert WRONG_PASSWORD not in _text(outcome)
    assert PASSWORD not in _text(outcome)
    assert started == []
    assert auth_sink.handler.received == []
    assert auth_sink.logins and all(login == USER.encode() and not ok for login, ok in auth_sink.logins)


def test_auth_without_username_is_refused_by_auth_required_server(auth_sink: TlsSink, certs: Certs) -> None:
    outcome, started = _send(auth_sink.transport("starttls", None, ca_file=certs.ca_file))
    assert not isinstance(outcome, Delivered), outcome
    assert "530" in _text(outcome), outcome  # 530 5.7.0 Authentication required
    assert started == []
    assert auth_sink.handler.received == []


# --- 5. AUTH XOAUTH2 (Gmail, Microsoft 365): an access token a helper keeps fresh in a file ------------------------


def test_xoauth2_token_read_again_for_each_new_connection(oauth_sink: TlsSink, certs: Certs, tmp_path: Path) -> None:
    handler = oauth_sink.handler
    assert isinstance(handler, OAuthSinkHandler)
    handler.tokens.add("ya29.first")
    token_file = tmp_path / "smtp.token"
    token_file.write_text("ya29.first\n")
    cfg = SmtpTransportConfig(type="smtp", host="127.0.0.1", port=oauth_sink.port, security="starttls", timeout=5,
                              username=USER, auth="xoauth2", password_file=str(token_file), ca_file=str(certs.ca_file))
    transport = build_transport(Config(base_dir=tmp_path, outbound={"transport": cfg}))  # type: ignore[arg-type]
    assert isinstance(transport, SmtpTransport)
    outcome, started = _send(transport)
    _assert_delivered_over_tls(oauth_sink, outcome, started)
    assert handler.seen == [(USER, "ya29.first")]

    handler.tokens = {"ya29.second"}  # the first expired and the helper has not run yet: a retry, not a failure
    outcome, started = _send(transport, key="tls2")
    assert isinstance(outcome, TempFail) and "535" in outcome.reason and started == [], outcome
    assert "ya29" not in _text(outcome)
    token_file.write_text("ya29.second\n")  # the helper refreshed it: the next connection uses the new one
    outcome, started = _send(transport, key="tls3")
    assert isinstance(outcome, Delivered) and started == [1], outcome
    assert handler.seen[-1] == (USER, "ya29.second")
    token_file.unlink()  # gone meanwhile: a retry with the reason, not a crash
    outcome, started = _send(transport, key="tls4")
    assert isinstance(outcome, TempFail) and "cannot read password_file" in outcome.reason and started == []


def test_xoauth2_needs_a_username_and_a_token_source() -> None:
    with pytest.raises(ValueError, match="auth xoauth2 needs username and password_env or password_file"):
        SmtpTransportConfig(type="smtp", host="h", auth="xoauth2", username=USER)


def test_probe_logs_in_and_sends_nothing(auth_sink: TlsSink, certs: Certs) -> None:
    """What `maild config check --connect` does with the SMTP server: connect, STARTTLS, AUTH, QUIT."""
    good = auth_sink.transport("starttls", PASSWORD, ca_file=certs.ca_file, username=USER)
    assert "AUTH" in asyncio.run(good.probe())
    bad = auth_sink.transport("starttls", WRONG_PASSWORD, ca_file=certs.ca_file, username=USER)
    with pytest.raises(aiosmtplib.SMTPAuthenticationError, match="535"):
        asyncio.run(bad.probe())
    oks = [ok for _, ok in auth_sink.logins]  # the wrong password tried with each mechanism the server offers
    assert auth_sink.handler.received == [] and oks[0] and not any(oks[1:])
