"""`maild web` serves the web app alone; `maild run` serves it beside ingest, on its own listener."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from maild.daemon import Daemon
from tests.helpers import config_at, write_config


def _get(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as response:
        return response.status, response.read().decode()


def test_maild_web_serves_the_login_page_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", [])
    process = subprocess.Popen([sys.executable, "-m", "maild", "--config", str(config), "web", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until the server listens (or the process ends)
        assert line.startswith("web app on http://127.0.0.1:"), (line, process.stderr.read() if process.stderr else "")
        base = line.split()[3].rstrip("/")
        status, page = _get(f"{base}/login")
        assert status == 200 and "Log in to maild" in page
        assert (tmp_path / "data" / "web.secret").stat().st_mode & 0o077 == 0  # created owner-only
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "no users yet: create one with `maild user add NAME --role admin`" in err
    assert "Traceback" not in err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_maild_run_serves_the_web_app_on_its_own_port(tmp_path: Path) -> None:
    config_file = write_config(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", [])
    data = yaml.safe_load(config_file.read_text())
    port = _free_port()
    data["tracking"] = {"listen_port": 0, "secret_env": None, "secret_file": "tracking.secret"}
    (tmp_path / "tracking.secret").write_text("a tracking secret of enough bytes")
    (tmp_path / "tracking.secret").chmod(0o600)
    data["web"] = {"listen_port": port}
    data["rules"] = {"enabled": False}
    config_file.write_text(yaml.safe_dump(data))
    daemon = Daemon(config_at(config_file))
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, page = _get(f"http://127.0.0.1:{port}/login")
                break
            except OSError:
                assert time.monotonic() < deadline, "the web app did not start"
                time.sleep(0.2)
        assert status == 200 and "Log in to maild" in page
    finally:
        daemon.stop.set()
        thread.join(60)
    assert not thread.is_alive()
