"""Signed webhook POSTs: the secret by name from the config, every address of the target checked and the
connection pinned to a checked one.

A rule names its secret (`secret: NAME`); only the config's `rules.webhook_secrets` can be used, read with a
size bound. The host is resolved once; every address it resolves to must be public (not loopback, private,
link-local, multicast, unspecified or reserved) unless it lies in `rules.webhook_allow_networks`, and the
connection goes to that very address (a second lookup could answer differently: DNS rebinding), with the host
name in `Host:` and for TLS (SNI, certificate check). No proxy, no redirects (a 3xx is a failure).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import socket
import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit

from maild.config import Config, ConfigError, read_secret

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ANSWER_BYTES = 4096  # of a receiver's answer, for the error message: no more is read
USER_AGENT = "maild-rules"


class WebhookError(Exception):
    """A webhook that cannot be sent, or was not accepted; the message says why (never a secret)."""


def signing_secret(config: Config, name: str) -> bytes:
    """The secret `name` of the config's `rules.webhook_secrets`, read now."""
    declared = config.rules.webhook_secrets.get(name)
    if declared is None:
        raise WebhookError(f"secret {name!r} is not declared in the config's rules.webhook_secrets")
    try:
        value = read_secret(f"rules.webhook_secrets.{name}", declared.env, declared.file, config.base_dir,
                            file_key="file")
    except ConfigError as exc:
        raise WebhookError(str(exc)) from None
    if not value:
        raise WebhookError(f"rules.webhook_secrets.{name} is empty")
    return value.encode("utf-8")


def refusal(address: IpAddress, allowed: Sequence[IpNetwork]) -> str | None:
    """Why a webhook may not connect to `address` (None: it may): anything but a public unicast address, unless
    one of the `allowed` networks holds it."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(address.version == network.version and address in network for network in allowed):
        return None
    for test, what in (("is_unspecified", "an unspecified address"), ("is_loopback", "a loopback address"),
                       ("is_link_local", "a link-local address"), ("is_multicast", "a multicast address"),
                       ("is_private", "a private address"), ("is_reserved", "a reserved address")):
        if getattr(address, test):
            return what
    return None if address.is_global else "not a public address"


def checked_address(host: str, port: int, allowed: Sequence[IpNetwork]) -> str:
    """The address to connect to: `host` resolved once, every address it has checked (one refused address
    refuses the host: which one a client picks is not ours to predict)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise WebhookError(f"cannot resolve {host}: {exc.strerror or exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
    if not addresses:
        raise WebhookError(f"cannot resolve {host}: no address")
    for text in addresses:
        why = refusal(ipaddress.ip_address(text), allowed)
        if why is not None:
            shown = host if host == text else f"{host} ({text})"
            raise WebhookError(f"refused to connect to {shown}: {why}; a webhook reaches public addresses only "
                               "unless rules.webhook_allow_networks in the config allows that network")
    return addresses[0]


def post(config: Config, url: str, body: bytes, *, secret: str, key: str, timeout: float) -> int:
    """POST `body` to `url`, signed with the secret named `secret`; returns the 2xx status, raises WebhookError for
    a refused target, a transport error or any other answer."""
    signature = hmac.new(signing_secret(config, secret), body, hashlib.sha256).hexdigest()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"not an http(s) URL: {url}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = checked_address(parts.hostname, port, config.rules.webhook_allow_networks)
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = _PinnedHTTPS(parts.hostname, port, address, timeout)
    else:
        connection = _PinnedHTTP(parts.hostname, port, address, timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"Content-Type": "application/json", "Idempotency-Key": key, "User-Agent": USER_AGENT,
               "X-Maild-Signature": f"sha256={signature}"}
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read(ANSWER_BYTES)
    except (OSError, http.client.HTTPException) as exc:
        raise WebhookError(f"POST {url} failed: {type(exc).__name__}: {exc}") from None
    finally:
        connection.close()
    if not 200 <= response.status < 300:
        text = answer.decode("utf-8", "replace")[:200]
        raise WebhookError(f"webhook answered {response.status}: {text}")
    return response.status


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to `address`, whatever `host` would resolve to now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """An HTTPS connection to `address`; TLS (SNI, the certificate's name) for `host`."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        try:
            self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
