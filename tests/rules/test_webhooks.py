"""Webhook targets: which addresses a webhook may reach, and the connection pinned to the address that was checked
(a real HTTP receiver; only the DNS answers are made up, to rebind a name between two lookups)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

import pytest

from maild.config import Config
from maild.rules import webhooks
from maild.rules.webhooks import WebhookError, refusal
from tests.support.http_server import LocalHttpServer, Reply, Request

REFUSED = {
    "127.0.0.1": "a loopback address", "::1": "a loopback address", "::ffff:127.0.0.1": "a loopback address",
    "10.1.2.3": "a private address", "172.16.0.9": "a private address", "192.168.1.1": "a private address",
    "fc00::1": "a private address", "169.254.169.254": "a link-local address", "fe80::1": "a link-local address",
    "224.0.0.251": "a multicast address", "ff02::1": "a multicast address", "0.0.0.0": "an unspecified address",
    "::": "an unspecified address", "100.64.0.1": "not a public address", "240.0.0.1": "a private address",
}


@pytest.mark.parametrize("address", sorted(REFUSED))
def test_anything_but_a_public_address_is_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), []) == REFUSED[address]


def test_public_addresses_pass_and_the_config_may_allow_a_network() -> None:
    assert refusal(ipaddress.ip_address("93.184.216.34"), []) is None
    assert refusal(ipaddress.ip_address("2606:4700::6810:84e5"), []) is None
    allowed = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")]
    assert refusal(ipaddress.ip_address("10.1.2.3"), allowed) is None
    assert refusal(ipaddress.ip_address("::1"), allowed) is None
    assert refusal(ipaddress.ip_address("127.0.0.1"), allowed) == "a loopback address"


def _config(tmp_path: Path, allow: list[str]) -> Config:
    (tmp_path / "hook.key").write_text("s3cret\n")
    return Config.model_validate({"base_dir": tmp_path, "rules": {
        "webhook_secrets": {"erp": {"file": "hook.key"}}, "webhook_allow_networks": allow}})


def test_the_connection_goes_to_the_checked_address_not_to_a_second_lookup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: a name that first answers an allowed address, then a forbidden one. The POST goes to the
    address that was checked (one lookup), never to what a second lookup says."""
    seen: list[Request] = []
    server = LocalHttpServer(lambda request: seen.append(request) or Reply(204))  # type: ignore[func-returns-value]
    port = int(server.url.rsplit(":", 1)[1])
    answers = iter(["127.0.0.1", "10.255.255.1"])  # the second would be a private host: never reached
    real = socket.getaddrinfo

    def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.rebind.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (next(answers), port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        status = webhooks.post(_config(tmp_path, ["127.0.0.1/32"]), f"http://hooks.rebind.test:{port}/in?x=1",
                               b'{"a": 1}', secret="erp", key="k-1", timeout=5)
    finally:
        server.close()
    assert status == 204
    [request] = seen
    assert request.path == "/in?x=1" and request.headers["Host"] == f"hooks.rebind.test:{port}"
    assert request.headers["Idempotency-Key"] == "k-1" and request.headers["X-Maild-Signature"].startswith("sha256=")


def test_a_name_with_any_forbidden_address_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def two_addresses(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "mixed.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", 443))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", two_addresses)
    with pytest.raises(WebhookError, match=r"refused to connect to mixed.example \(10.0.0.5\): a private address"):
        webhooks.post(_config(tmp_path, []), "https://mixed.example/hook", b"{}", secret="erp", key="k", timeout=5)


def test_an_undeclared_secret_and_an_unresolvable_host_say_so(tmp_path: Path) -> None:
    config = _config(tmp_path, [])
    with pytest.raises(WebhookError, match=r"secret 'crm' is not declared in the config's rules\.webhook_secrets"):
        webhooks.post(config, "https://hooks.example/x", b"{}", secret="crm", key="k", timeout=5)
    with pytest.raises(WebhookError, match=r"cannot resolve no-such-host\.invalid"):
        webhooks.post(config, "https://no-such-host.invalid/x", b"{}", secret="erp", key="k", timeout=5)
