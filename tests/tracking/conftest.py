"""The `endpoint` fixture: maild's tracking app served for real by uvicorn on a free port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from maild.config import TrackingConfig
from maild.store.db import Database
from maild.tracking.app import create_app
from maild.tracking.server import TrackingServer
from tests.tracking.support import SECRET, Endpoint


@pytest.fixture
def endpoint(db: Database) -> Iterator[Endpoint]:
    cfg = TrackingConfig(listen_port=0, scanner_seconds=10)
    server = TrackingServer(create_app(db, SECRET, cfg), "127.0.0.1", 0, cfg)
    server.start()
    assert server.port != 0
    ep = Endpoint(db, server, f"http://127.0.0.1:{server.port}")
    try:
        yield ep
    finally:
        ep.http.close()
        server.stop()
