"""Transports: hand one stored message to an SMTP server (or to files) and say what happened, as a value.

`Delivered(reply)`: the server took responsibility (250 after DATA). `TempFail(reason)`: a 4xx, a timeout or
a dropped connection: try later. A 4xx is a definite "not accepted", also at the end of DATA (greylisting,
content filters); only a timeout or a dropped connection once DATA began leaves the server's answer unknown:
`TempFail(reason, maybe_delivered=True)`, never retried automatically. `PermFail(reason, reply)`: a 5xx: the
server refused for good.

Right before DATA every transport awaits `on_data_started(outbox_id, connection)` (a committed DB update
naming the connection), so a crash from then on is known to be ambiguous and never re-sent blindly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib

from maild.config import ConfigError, SmtpTransportConfig
from maild.permissions import private_dir


@dataclass(frozen=True)
class Delivered:
    reply: str


@dataclass(frozen=True)
class TempFail:
    reason: str
    maybe_delivered: bool = False  # DATA began and no reply came: the server may have taken the mail
    reply: str | None = None  # the server's 4xx, when it gave one


@dataclass(frozen=True)
class PermFail:
    reason: str
    reply: str


Outcome = Delivered | TempFail | PermFail
DataStarted = Callable[[int, str], Awaitable[None]]  # (outbox id, connection)


class Transport:
    async def send(self, outbox_id: int, sender: str, recipients: Sequence[str], raw: bytes,
                   on_data_started: DataStarted) -> Outcome:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class FileTransport(Transport):
    """Writes `<outbox id>-<sanitised Message-ID>.eml` into a directory, atomically (temp file + rename)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path_for(self, outbox_id: int, raw: bytes) -> Path:
        return self.directory / f"{outbox_id}-{_safe_message_id(raw)}.eml"

    async def send(self, outbox_id: int, sender: str, recipients: Sequence[str], raw: bytes,
                   on_data_started: DataStarted) -> Outcome:
        target = self.path_for(outbox_id, raw)
        try:
            private_dir(target.parent)  # sent mail, owner-only (the temp file below is 0600)
        except OSError as exc:
            return TempFail(f"cannot create {target.parent}: {exc}")
        await on_data_started(outbox_id, f"file {target.parent}")
        try:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(raw)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            return TempFail(f"cannot write {target}: {exc}")
        return Delivered(f"written to {target}")


def _safe_message_id(raw: bytes) -> str:
    match = re.search(rb"^Message-ID:\s*<?([^>\r\n]*)>?", raw.split(b"\r\n\r\n", 1)[0], re.IGNORECASE | re.MULTILINE)
    text = match.group(1).decode("ascii", "replace") if match else "no-message-id"
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", text)[:150] or "no-message-id"


class DomainRateLimiter:
    """At most `per_minute` messages per recipient domain in any sliding 60-second window."""

    def __init__(self, per_minute: int, window: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window = window
        self._sent: dict[str, deque[float]] = {}
        self._lock = asyncio.Lock()

    async def acquire(self, domains: set[str]) -> None:
        while True:
            async with self._lock:
                now = time.monotonic()
                wait = 0.0
                for domain in domains:
                    stamps = self._sent.setdefault(domain, deque())
                    while stamps and now - stamps[0] >= self.window:
                        stamps.popleft()
                    if len(stamps) >= self.per_minute:
                        wait = max(wait, self.window - (now - stamps[0]))
                if wait <= 0:
                    for domain in domains:
                        self._sent[domain].append(now)
                    return
            await asyncio.sleep(min(wait, 5.0))


class SmtpTransport(Transport):
    """aiosmtplib, one client per connection slot (reused across messages), at most max_connections."""

    def __init__(self, cfg: SmtpTransportConfig, password: str | Callable[[], str | None] | None, *,
                 ca_file: str | None = None) -> None:
        """`password`: the secret (password, or access token with `auth: xoauth2`), or a function that reads it
        (called for each new connection)."""
        self.cfg = cfg
        self.password = password
        self.ca_file = ca_file or cfg.ca_file
        self.limiter = DomainRateLimiter(cfg.per_domain_per_minute)
        self._slots: asyncio.Queue[aiosmtplib.SMTP | None] | None = None

    def _queue(self) -> asyncio.Queue[aiosmtplib.SMTP | None]:
        if self._slots is None:
            self._slots = asyncio.Queue()
            for _ in range(self.cfg.max_connections):
                self._slots.put_nowait(None)
        return self._slots

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.cfg.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _connect(self) -> aiosmtplib.SMTP:
        cfg = self.cfg
        tls = cfg.security in ("tls", "starttls")
        client = aiosmtplib.SMTP(hostname=cfg.host, port=cfg.effective_port, timeout=cfg.timeout,
                                 use_tls=cfg.security == "tls", start_tls=cfg.security == "starttls",
                                 tls_context=self._tls_context() if tls else None)
        await client.connect()
        if cfg.username:
            try:
                secret = (self.password() if callable(self.password) else self.password) or ""
                if cfg.auth == "xoauth2":
                    await client.auth_xoauth2(cfg.username, secret)
                else:
                    await client.login(cfg.username, secret)
            except BaseException:
                client.close()
                raise
        return client

    async def probe(self) -> str:
        """Connect (TLS and auth as configured) and QUIT, sending nothing: the server's extensions. Raises on
        any failure (for `maild config check --connect`)."""
        client = await self._connect()
        try:
            if client.last_ehlo_response is None and client.last_helo_response is None:
                await client.ehlo()
            extensions = ", ".join(sorted(name.upper() for name in client.esmtp_extensions)) or "no ESMTP extensions"
            await client.quit()
        except BaseException:
            client.close()
            raise
        return extensions

    async def send(self, outbox_id: int, sender: str, recipients: Sequence[str], raw: bytes,
                   on_data_started: DataStarted) -> Outcome:
        await self.limiter.acquire({r.rpartition("@")[2].lower() for r in recipients})
        slots = self._queue()
        client = await slots.get()
        try:
            for attempt in (1, 2):
                reused = client is not None and client.is_connected
                try:
                    if not reused:
                        _close_quietly(client)
                        client = None
                        client = await self._connect()
                    return await self._transaction(client, outbox_id, sender, recipients, raw, on_data_started)
                except _StaleConnection as exc:
                    _close_quietly(client)
                    client = None
                    if not (reused and attempt == 1):
                        return TempFail(f"connection lost before DATA: {exc}")
                except aiosmtplib.SMTPResponseException as exc:
                    # Greeting/EHLO/STARTTLS/AUTH refused: a server or config problem, not this message's.
                    _close_quietly(client)
                    client = None
                    return TempFail(f"session refused by {self.cfg.host}: {exc.code} {exc.message}")
                except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
                    _close_quietly(client)
                    client = None
                    return TempFail(f"cannot connect to {self.cfg.host}:{self.cfg.effective_port}: {exc}")
                except ConfigError as exc:  # the password/token file went missing meanwhile
                    client = None
                    return TempFail(str(exc))
            return TempFail("connection lost before DATA")
        finally:
            slots.put_nowait(client if client is not None and client.is_connected else None)

    async def _transaction(self, client: aiosmtplib.SMTP, outbox_id: int, sender: str, recipients: Sequence[str],
                           raw: bytes, on_data_started: DataStarted) -> Outcome:
        stage = "MAIL FROM"
        try:
            await client.mail(sender)
            for rcpt in recipients:
                stage = f"RCPT TO:<{rcpt}>"
                await client.rcpt(rcpt)
        except aiosmtplib.SMTPResponseException as exc:
            await _reset(client)
            return _classify(exc.code, exc.message, stage)
        except aiosmtplib.SMTPTimeoutError as exc:
            client.close()
            return TempFail(f"timeout at {stage}: {exc}")
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
            raise _StaleConnection(str(exc)) from exc
        try:
            await on_data_started(outbox_id, _describe_connection(client))
        except BaseException:
            await _reset(client)  # nothing was transmitted; leave the connection clean for the next message
            raise
        try:
            response = await client.data(raw)
        except aiosmtplib.SMTPResponseException as exc:
            await _reset(client)
            return _classify(exc.code, exc.message, "DATA")
        except aiosmtplib.SMTPTimeoutError as exc:
            client.close()
            return TempFail(f"timeout during DATA (the message may have been delivered): {exc}", True)
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            return TempFail(f"connection lost during DATA (the message may have been delivered): {exc}", True)
        return Delivered(f"{response.code} {response.message}")

    async def close(self) -> None:
        if self._slots is None:
            return
        while not self._slots.empty():
            client = self._slots.get_nowait()
            if client is not None and client.is_connected:
                try:
                    await client.quit()
                except (TimeoutError, aiosmtplib.SMTPException, OSError):
                    client.close()
        self._slots = None


def _describe_connection(client: aiosmtplib.SMTP) -> str:
    """`local address:port -> server:port`, as the server's log would show the connection."""
    transport = getattr(client, "transport", None)
    local = transport.get_extra_info("sockname") if transport is not None else None
    here = f"{local[0]}:{local[1]}" if isinstance(local, tuple) and len(local) >= 2 else "?"
    return f"{here} -> {client.hostname}:{client.port}"


class _StaleConnection(Exception):
    """The server dropped a connection before DATA: nothing was transmitted, reconnecting is safe."""


def _classify(code: int, message: str, stage: str) -> Outcome:
    reply = f"{code} {message}"
    if 500 <= code < 600:
        return PermFail(f"refused at {stage}: {reply}", reply)
    return TempFail(f"{stage}: {reply}", reply=reply)


async def _reset(client: aiosmtplib.SMTP) -> None:
    try:
        await client.rset()
    except (TimeoutError, aiosmtplib.SMTPException, OSError):
        client.close()


def _close_quietly(client: aiosmtplib.SMTP | None) -> None:
    if client is not None:
        with contextlib.suppress(Exception):
            client.close()
