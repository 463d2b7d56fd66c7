"""`maild web`: serve the web app and JSON API alone (without ingesting, sending or running rules)."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import click

from maild.cli.context import AppContext, pass_app
from maild.cli.render import say


@click.command("web")
@click.option("--port", type=int, default=None, help="Listen on this port instead of web.listen_port (0: any).")
@pass_app
def web(app: AppContext, port: int | None) -> None:
    """Serve the web app on web.listen_host:web.listen_port (default 127.0.0.1:8026) until Ctrl-C or SIGTERM.

    `maild run` serves it too. Log in with a user made by `maild user add NAME --role admin`."""
    from maild.config import ConfigError
    from maild.services import users
    from maild.web.server import WebUnavailable, start_web

    config = app.config
    if port is not None:
        config = config.model_copy(update={"web": config.web.model_copy(update={"listen_port": port})})
    db = app.database()
    # The handlers before the server starts: a SIGTERM right after "web app on" must stop it cleanly, not kill it.
    stop = threading.Event()

    def _stop(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server = start_web(config, db)
    except (WebUnavailable, ConfigError) as exc:
        click.echo(f"maild web: not started: {exc}", err=True)
        sys.exit(1)
    say(f"web app on http://{config.web.listen_host}:{server.port}/ (Ctrl-C stops)")
    if users.count(db) == 0:
        click.echo("no users yet: create one with `maild user add NAME --role admin`", err=True)
    stop.wait()
    server.stop()
