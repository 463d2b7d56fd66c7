"""The tracking port taken: `maild run` refuses to start with the reason (links would reach whoever holds the
port), `config check --connect` says FAILED; a port served by another daemon of this installation (the same
secret) is fine: `run` stands by and takes the port over once it is free."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from maild.cli.setup import initialise
from maild.config import load_config
from maild.daemon import Daemon
from maild.tracking.app import KEY_ID_HEADER, create_app
from maild.tracking.server import TrackingServer
from maild.tracking.signing import key_id, load_secret
from tests.helpers import invoke
from tests.outbound.conftest import free_port
from tests.support.http_server import LocalHttpServer, Reply

TAKEN = "the port is already in use by another process"


@pytest.fixture
def stranger() -> Iterator[LocalHttpServer]:
    """Some other web server on the machine."""
    server = LocalHttpServer(lambda _request: Reply(404, b"not maild"))
    try:
        yield server
    finally:
        server.close()


def _home(tmp_path: Path, port: int) -> Path:
    config = initialise(tmp_path / "home", samples=False)
    data = yaml.safe_load(config.read_text())
    data["tracking"].update({"listen_port": port, "base_url": f"http://127.0.0.1:{port}"})
    data.setdefault("web", {})["listen_port"] = 0  # the web app on any free port: tests run side by side
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def _port(server: LocalHttpServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _tracking_line(config: Path) -> tuple[int, str]:
    result = invoke(config, "config", "check", "--connect", check=False)
    [line] = [line for line in result.stdout.splitlines() if line.startswith("tracking ")]
    return result.returncode, line.removeprefix("tracking").strip()


def test_run_refuses_to_start_when_another_process_holds_the_port(tmp_path: Path,
                                                                  stranger: LocalHttpServer) -> None:
    config = _home(tmp_path, _port(stranger))
    proc = subprocess.Popen([sys.executable, "-m", "maild", "--config", str(config), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
        pytest.fail(f"maild run kept running without its tracking endpoint:\n{err[-2000:]}")
    assert proc.returncode == 1, err
    assert f"maild: not started: tracking endpoint: cannot listen on 127.0.0.1:{_port(stranger)}: {TAKEN}" in err
    assert "Traceback" not in err
    assert stranger.requests == [] or all(r.path == "/health" for r in stranger.requests)


def test_config_check_connect_fails_the_tracking_line_when_the_port_is_taken(tmp_path: Path,
                                                                             stranger: LocalHttpServer) -> None:
    config = _home(tmp_path, _port(stranger))
    code, line = _tracking_line(config)
    assert code == 1
    assert line.startswith("FAILED") and TAKEN in line, line


def test_config_check_connect_tracking_line_ok_when_free_or_served_by_our_daemon(tmp_path: Path) -> None:
    port = free_port()
    config = _home(tmp_path, port)
    code, line = _tracking_line(config)
    assert code == 0 and line == f"OK      secret loaded; listens on 127.0.0.1:{port} free; links point at " \
                                  f"http://127.0.0.1:{port}", line

    cfg = load_config(config, environ={})
    ours = TrackingServer(create_app(_db(cfg), load_secret(cfg.tracking, cfg.base_dir), cfg.tracking), "127.0.0.1",
                          port, cfg.tracking)
    ours.start()
    try:
        code, line = _tracking_line(config)
        assert code == 0 and "served by a running maild with this secret" in line, line
    finally:
        ours.stop()

    other = TrackingServer(create_app(_db(cfg), b"a-different-secret-0123456789", cfg.tracking), "127.0.0.1", port,
                           cfg.tracking)
    other.start()
    try:
        code, line = _tracking_line(config)
        assert code == 1 and line.startswith("FAILED") and "another maild, with a different secret" in line, line
    finally:
        other.stop()


def test_a_second_daemon_stands_by_and_takes_the_port_over(tmp_path: Path) -> None:
    port = free_port()
    config = load_config(_home(tmp_path, port), environ={})
    secret = load_secret(config.tracking, config.base_dir)
    first = TrackingServer(create_app(_db(config), secret, config.tracking), "127.0.0.1", port, config.tracking)
    first.start()
    daemon = Daemon(config)
    thread = threading.Thread(target=daemon.run, name="second-daemon")
    thread.start()
    try:
        time.sleep(2)
        assert thread.is_alive(), "the second daemon runs: its installation's endpoint is served"
        first.stop()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
                if response.headers.get(KEY_ID_HEADER) == key_id(secret):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail("the standing-by daemon did not take the tracking port over")
    finally:
        daemon.stop.set()
        thread.join(60)
    assert not thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)


def _db(config: object) -> object:
    from maild.store.db import Database

    database = Database(config.database_url)  # type: ignore[attr-defined]
    database.upgrade()
    return database
