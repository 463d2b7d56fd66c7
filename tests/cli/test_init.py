from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maild.cli.setup import initialise
from maild.config import load_config
from tests.helpers import any_tracking_port, invoke, status_json


def test_init_then_run_works_on_the_embedded_default(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = invoke(None, "init", str(home)).stdout
    config = home / "maild.yaml"
    assert f"Wrote {config}" in out
    assert (home / "maildir" / "new").is_dir() and (home / "data" / "maild.db").is_file()
    assert "OK (1 source(s)" in invoke(config, "config", "check").stdout
    any_tracking_port(config)  # 8025 may be taken on a shared machine (then run would refuse to start)
    proc = subprocess.Popen([sys.executable, "-m", "maild", "--config", str(config), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and status_json(config)["totals"]["messages"] < 4:
            time.sleep(0.3)
        (home / "maildir" / "new" / "dropped.eml").write_bytes(
            b"From: x@customer.example\r\nSubject: dropped in\r\nMessage-ID: <d@x>\r\n\r\nhello\r\n")
        while time.monotonic() < deadline and status_json(config)["totals"]["messages"] < 5:
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert status_json(config)["totals"] == {"messages": 5, "quarantined": 0, "locations": 5, "events": 10}
    table = invoke(config, "status").stdout
    assert "local" in table and "(maildir)" in table


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    invoke(None, "init", str(tmp_path))
    again = invoke(None, "init", str(tmp_path), check=False)
    assert again.returncode != 0
    assert "already exists (use --force" in again.stderr


def test_help_explains_the_commands() -> None:
    text = invoke(None, "--help", env={"MAILD_CONFIG": ""}).stdout
    for command in ("init", "run", "ingest", "status", "quarantine", "config"):
        assert command in text
    assert "--source URL" in invoke(None, "ingest", "--help").stdout


def test_config_from_environment_variable(tmp_path: Path) -> None:
    invoke(None, "init", str(tmp_path / "h"))
    env = {**os.environ, "MAILD_CONFIG": str(tmp_path / "h" / "maild.yaml")}
    result = subprocess.run([sys.executable, "-m", "maild", "config", "check"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0 and "maild.yaml: OK" in result.stdout


@pytest.mark.parametrize("instance", ["12345678", "12e45678", "0x1f2e3d", "abcdef01"])
def test_init_keeps_an_instance_id_that_looks_like_a_number(tmp_path: Path, instance: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("maild.cli.setup.secrets.token_hex", lambda _n: instance)
    config = load_config(initialise(tmp_path / "home", samples=False), environ={})
    assert config.matching.instance_id == instance


DEMO = {  # sample mail (Message-ID) -> the sample third party it belongs to
    "<inquiry-1@mueller-bau.example>": "Müller Bau GmbH",
    "<reply-1@example.com>": "Müller Bau GmbH",  # ours (example.com is the demo's own domain): to Anna Becker
    "<news-12@supplier.example>": "Supplier Example Ltd",
    "<q-7@acme.example>": "Acme Corp",
}


def test_the_demo_matches_every_sample_mail_and_explains_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = invoke(None, "init", str(home)).stdout
    assert "Demo: 4 sample mails" in out and "timeline 'Müller Bau GmbH'" in out
    config = home / "maild.yaml"
    assert load_config(config, environ={}).matching.own_domains == ["example.com"]
    invoke(config, "init", str(home), "--force")  # again: the sample directory is upserted, not doubled
    names = [tp["name"] for tp in json.loads(invoke(config, "export", "thirdparties", "--format", "json").stdout)]
    assert sorted(names) == ["Acme Corp", "Müller Bau GmbH", "Supplier Example Ltd"]
    assert "ingested 4 message(s)" in invoke(config, "ingest", "--once").stdout
    decided = {}
    for message in range(1, 5):
        explained = json.loads(invoke(config, "explain", str(message), "--json").stdout)
        decision = explained["decision"]
        assert decision["status"] == "matched" and decision["reason"], explained
        decided[explained["message"]["message_id"]] = decision["thirdparty"]
    assert decided == DEMO
    for name in set(DEMO.values()):
        timeline = json.loads(invoke(config, "timeline", name, "--json").stdout)
        subjects = {event["data"]["subject"] for event in timeline if event["type"] == "mail.matched"}
        assert len(subjects) == list(DEMO.values()).count(name), timeline
    assert "triage is empty" in invoke(config, "triage", "list").stdout


def test_init_without_samples_has_no_demo_directory(tmp_path: Path) -> None:
    config = initialise(tmp_path / "home", samples=False)
    assert json.loads(invoke(config, "export", "thirdparties", "--format", "json").stdout) == []
