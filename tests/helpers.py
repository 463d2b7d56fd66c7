"""Small builders shared by tests: configs, messages, running the real `maild` command."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import IO, Any

import yaml
from click.testing import CliRunner

from maild.config import Config, load_config

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
if not CORPUS.is_dir():  # CI lays shared/ beside the clone; a worktree may sit deeper
    CORPUS = Path(os.environ.get("MAILD_CORPUS", "/work/shared/corpus"))


def corpus_files() -> list[Path]:
    skip = {"SOURCE_COMMIT", "README.md"}
    files = (p for p in CORPUS.rglob("*") if p.is_file() and p.name not in skip)
    return sorted(p for p in files if not p.name.startswith("LICENSE"))


def write_config(home: Path, db_url: str, sources: list[dict[str, Any]], **ingest: Any) -> Path:
    """A config file in `home`, as a user would write it."""
    home.mkdir(parents=True, exist_ok=True)
    data = {
        "database": {"url": db_url},
        "storage": {"blob_dir": "blobs"},
        "ingest": {"reconnect_max_delay": 2, "poll_interval": 2, "lock_ttl": 10, **ingest},
        "sources": sources,
        # Any free port (tests run side by side), and off: the daemons other tests run serve no web app
        # (tests/web/ turn it on where it is what they test).
        "web": {"enabled": False, "listen_port": 0},
    }
    path = home / "maild.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def any_tracking_port(config_file: Path) -> Path:
    """Let the config's tracking endpoint listen on any free port: `maild run` refuses to start when its port
    is taken, and tests (and other test runs on the machine) run side by side."""
    data = yaml.safe_load(config_file.read_text())
    data.setdefault("tracking", {})["listen_port"] = 0
    data.setdefault("web", {})["listen_port"] = 0  # the web app's listener too (maild/web/)
    config_file.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return config_file


def config_at(path: Path) -> Config:
    return load_config(path, environ={})


def make_message(subject: str = "hello", body: str = "text", sender: str = "anna@customer.example",
                 message_id: str | None = None, attachment: bytes | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "sales@example.test"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2026, 11, 20, 10, 0, tzinfo=UTC))
    msg["Message-ID"] = message_id or make_msgid(domain="customer.example")
    msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="data.bin")
    return msg.as_bytes()


def maild(config: Path | None, *args: str, check: bool = True, timeout: float = 300,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real command line, as a user would."""
    command = [sys.executable, "-m", "maild"]
    if config is not None:
        command += ["--config", str(config)]
    result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"maild {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def invoke(config: Path | None, *args: str, check: bool = True, env: dict[str, str] | None = None,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `maild` in this process, through the same `main()` as the installed command (its umask, its database
    error messages), with stdin, stdout, stderr and the environment of its own; uncaught exceptions end up in
    stderr with their traceback and exit code 1, as in a subprocess. Much faster than `maild()`; use that where
    the process itself is tested (signals, kill -9, a daemon running on its own)."""
    from maild.cli.main import main

    command = [*(["--config", str(config)] if config is not None else []), *args]
    handlers = {signum: signal.getsignal(signum) for signum in _SIGNALS}  # `ingest` and `run` set their own
    root = logging.getLogger()
    saved_logging = root.handlers[:], root.level, {name: logging.getLogger(name).level for name in _QUIETED}
    umask = os.umask(0o077)
    os.umask(umask)
    try:
        with CliRunner().isolation(input=input, env=env) as (stdout, stderr, _mixed):
            try:
                main(command)
                code = 0
            except SystemExit as exc:
                code = _exit_code(exc)
            except Exception:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            out, err = stdout.getvalue().decode(), stderr.getvalue().decode()
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        os.umask(umask)
        root.handlers[:], level, quieted = saved_logging
        root.setLevel(level)
        for name, quiet_level in quieted.items():
            logging.getLogger(name).setLevel(quiet_level)
    result = subprocess.CompletedProcess(["maild", *command], code, out, err)
    if check and code != 0:
        raise AssertionError(f"maild {' '.join(args)} exited {code}\n{out}\n{err}")
    return result


_QUIETED = ("mailparser", "imapclient", "alembic")  # maild.log.setup_logging sets their levels
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


class Lines:
    """A running process's output, read line by line in a thread, so a test can wait for a line (polling, with a
    deadline) while the process goes on."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), name="process-output", daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, count: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.text().count(text) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {text!r} ({count}x) in:\n{self.text()[-3000:]}")
            time.sleep(0.05)

    def close(self, timeout: float = 60) -> str:
        """Everything, once the process has closed its end."""
        self._thread.join(timeout)
        return self.text()


def status_json(config: Path) -> dict[str, Any]:
    return json.loads(invoke(config, "status", "--json").stdout)
