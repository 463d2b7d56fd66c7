"""`maild run` and the rules: invalid rules stop the start with file:line:column; SIGHUP re-reads them and
keeps the last good set when the new one is invalid."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from maild.cli.setup import initialise
from tests.helpers import Lines, any_tracking_port

RULE = "rules:\n  - name: {name}\n    on: {{event: {event}}}\n    do: [stop: true]\n"


def test_run_refuses_invalid_rules(tmp_path: Path) -> None:
    config = initialise(tmp_path / "home", samples=False)
    (tmp_path / "home" / "rules" / "zz-broken.yaml").write_text(
        "rules:\n  - name: broken\n    on: {sweep: invoice, date: due_on, offset: seven days}\n    do: [stop: true]\n")
    proc = subprocess.run([sys.executable, "-m", "maild", "--config", str(config), "run"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "not started, the rules are invalid" in proc.stderr
    assert "zz-broken.yaml:3:" in proc.stderr and "offset" in proc.stderr


def test_sighup_reloads_and_keeps_the_last_good_set(tmp_path: Path) -> None:
    config = any_tracking_port(initialise(tmp_path / "home", samples=False))
    rules = tmp_path / "home" / "rules"
    proc = subprocess.Popen([sys.executable, "-m", "maild", "--config", str(config), "run"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    err = Lines(proc.stderr)
    try:
        err.wait_for("maild running")  # its SIGHUP handler and its rules are in place
        (rules / "zz-broken.yaml").write_text(RULE.format(name="x", event="mail.recieved"))
        proc.send_signal(signal.SIGHUP)
        err.wait_for("rules not reloaded, keeping the last good set")
        (rules / "zz-broken.yaml").unlink()
        (rules / "extra.yaml").write_text(RULE.format(name="extra", event="mail.received"))
        proc.send_signal(signal.SIGHUP)
        err.wait_for("rules reloaded")
        assert proc.poll() is None, "a bad reload never stops the daemon"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    text = err.close()
    assert proc.returncode == 0, text
    assert "zz-broken.yaml:3:" in text and "mail.recieved" in text
    assert text.count("rules reloaded") == 1
