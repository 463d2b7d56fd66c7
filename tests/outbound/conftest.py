"""An aiosmtpd sink on a free loopback port that records messages and can inject faults."""

from __future__ import annotations

import asyncio
import email
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from maild.config import SmtpTransportConfig
from maild.outbound.smtp import SmtpTransport
from maild.store.blobs import BlobStore


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes

    @property
    def subject(self) -> str:
        return str(email.message_from_bytes(self.data)["Subject"])


@dataclass
class SinkHandler:
    """Faults: rcpt_reply / data_reply (e.g. "450 ..." or "550 ..."), drop_in_data, delay_rcpt/delay_data."""

    received: list[Received] = field(default_factory=list)
    rcpt_reply: str | None = None
    data_reply: str | None = None
    drop_in_data: bool = False
    delay_rcpt: float = 0.0
    delay_data: float = 0.0
    connections: int = 0
    in_data: int = 0  # DATA commands being handled now (a held DATA of a killed client still completes)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.lock:
            self.connections += 1
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.delay_rcpt:
            await asyncio.sleep(self.delay_rcpt)
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.in_data += 1
        try:
            return await self._data(server, envelope)
        finally:
            with self.lock:
                self.in_data -= 1

    async def _data(self, server, envelope):
        if self.delay_data:
            await asyncio.sleep(self.delay_data)
        if self.drop_in_data:
            server.transport.close()
            return "250 never seen by the client"
        if self.data_reply:
            return self.data_reply
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 queued as sink"


@dataclass
class Sink:
    handler: SinkHandler
    host: str
    port: int

    def transport_config(self, **extra: object) -> SmtpTransportConfig:
        values: dict[str, object] = {"type": "smtp", "host": self.host, "port": self.port, "security": "plain",
                                     "timeout": 5, **extra}
        return SmtpTransportConfig(**values)

    def transport(self, **extra: object) -> SmtpTransport:
        return SmtpTransport(self.transport_config(**extra), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_sink() -> Iterator[Sink]:
    handler = SinkHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, data_size_limit=0)
    controller.start()
    try:
        yield Sink(handler, "127.0.0.1", port)
    finally:
        controller.stop()


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")
