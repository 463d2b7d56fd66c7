"""Small builders shared by tests: configs, messages, running the real `maild` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import yaml

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


def status_json(config: Path) -> dict[str, Any]:
    return json.loads(maild(config, "status", "--json").stdout)
