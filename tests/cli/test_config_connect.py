"""`maild config check --connect` against the real servers: the private Dovecot, an aiosmtpd server, SQLite,
a Maildir; then the same config with each of them wrong, each failure one line with its reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from maild.cli.setup import initialise
from maild.store.db import HEAD_REVISION
from tests.conftest import Mailbox
from tests.helpers import invoke, make_message
from tests.outbound.conftest import Sink, free_port, smtp_sink  # noqa: F401  (the fixture)


def _config(tmp_path: Path, mailbox: Mailbox, sink: Sink, **changes: Any) -> Path:
    config_file = initialise(tmp_path / "home")
    data = yaml.safe_load(config_file.read_text())
    data["sources"] = [mailbox.source(name="sales", folders=changes.get("folders", ["INBOX", "Sent"])),
                       {"name": "local", "type": "maildir", "path": changes.get("maildir", "maildir")}]
    data["outbound"]["transport"] = {"type": "smtp", "host": sink.host, "port": changes.get("smtp_port", sink.port),
                                     "security": "plain", "timeout": 5}
    if "webhook_secret_file" in changes:
        data["rules"]["webhook_secrets"] = {"crm": {"file": changes["webhook_secret_file"]}}
    data["tracking"]["listen_port"] = 0  # any free port: 8025 may be taken on a shared machine
    config_file.write_text(yaml.safe_dump(data, sort_keys=False))
    return config_file


def _lines(output: str) -> dict[str, str]:
    """`what  OK|FAILED  detail` lines by what (after the config's OK line and the permissions line)."""
    found = {}
    for line in output.splitlines()[1:]:
        if line.startswith("permissions: "):
            continue
        what, _, rest = line.partition("  ")
        found[what.strip()] = rest.strip()
    return found


def test_everything_reachable(tmp_path: Path, mailbox: Mailbox, smtp_sink: Sink) -> None:  # noqa: F811
    mailbox.append([make_message(subject=f"m{i}") for i in range(2)])
    out = invoke(_config(tmp_path, mailbox, smtp_sink), "config", "check", "--connect",
                env={"MAILD_TEST_IMAP_PASSWORD": mailbox.password}).stdout
    lines = _lines(out)
    assert list(lines) == ["database", "imap sales", "maildir local", "outbound", "tracking", "rules"], out
    assert all(line.startswith("OK") for line in lines.values()), out
    assert f"schema {HEAD_REVISION} (current)" in lines["database"]
    assert f"plain, password login as {mailbox.user}; INBOX (2 messages), Sent (0 messages); IDLE" in lines[
        "imap sales"]
    assert "4 message(s)" in lines["maildir local"]  # the sample mail `maild init` puts there
    assert f"127.0.0.1:{smtp_sink.port} plain, no login: " in lines["outbound"] and "(nothing sent)" in out
    assert smtp_sink.handler.received == []
    assert "10 rule(s)" in lines["rules"]  # the bounced-letter task rule gave way to the hold (issue 13)


def test_each_failure_is_one_line_with_its_reason(tmp_path: Path, mailbox: Mailbox, smtp_sink: Sink) -> None:  # noqa: F811
    closed = free_port()
    config = _config(tmp_path, mailbox, smtp_sink, folders=["INBOX", "Nope"], maildir="missing", smtp_port=closed,
                     webhook_secret_file="/dev/zero")
    result = invoke(config, "config", "check", "--connect", check=False,
                   env={"MAILD_TEST_IMAP_PASSWORD": mailbox.password})
    assert result.returncode == 1, result.stdout + result.stderr
    lines = _lines(result.stdout)
    assert lines["imap sales"] == f"FAILED  logged in as {mailbox.user}, but there is no folder 'Nope'"
    assert lines["maildir local"].startswith("FAILED") and "missing is not a Maildir (no new/ or cur/)" in lines[
        "maildir local"]
    assert lines["outbound"].startswith(f"FAILED  SMTPConnectError: Error connecting to 127.0.0.1 on port {closed}"), \
        lines["outbound"]
    assert lines["database"].startswith("OK")
    assert lines["rules"] == "FAILED  rules.webhook_secrets.crm: file /dev/zero is not a regular file", lines["rules"]

    wrong = invoke(config, "config", "check", "--connect", check=False, env={"MAILD_TEST_IMAP_PASSWORD": "wrong-pw"})
    assert wrong.returncode == 1
    imap = _lines(wrong.stdout)["imap sales"]
    assert imap.startswith("FAILED") and "authentication failed" in imap.lower(), imap
    assert "wrong-pw" not in wrong.stdout + wrong.stderr and mailbox.password not in wrong.stdout + wrong.stderr
