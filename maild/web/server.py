"""Serving the web app: uvicorn in a thread (with the tracking server's connection limits), for `maild run` and
`maild web`."""

from __future__ import annotations

import logging

from maild.config import Config, TrackingConfig
from maild.store.db import Database
from maild.tracking.server import PortUnavailable, TrackingServer

log = logging.getLogger("maild.web")


class WebUnavailable(Exception):
    """The web app's address cannot be listened on; the message says why and which key to change."""


def start_web(config: Config, db: Database) -> TrackingServer:
    """The web app, listening on web.listen_host:web.listen_port once this returns (`.port` is the bound port)."""
    from maild.web.app import create_app

    cfg = config.web
    server = TrackingServer(create_app(config, db), cfg.listen_host, cfg.listen_port,
                            TrackingConfig(max_connections=200, header_timeout=30))
    try:
        server.start()
    except PortUnavailable as exc:
        reason = str(exc).replace("tracking endpoint", "web app").replace(
            "tracking.listen_port (and base_url)", "web.listen_port").replace("tracking.listen_", "web.listen_")
        raise WebUnavailable(reason.replace("tracking links would reach that process, not maild",
                                            "another program answers there")) from None
    log.info("web app on http://%s:%s", cfg.listen_host, server.port)
    return server
