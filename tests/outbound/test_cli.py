from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from maild.cli.context import AppContext
from maild.cli.outbox import outbox as outbox_group
from maild.outbound import outbox
from maild.store.blobs import BlobStore
from maild.store.db import Database
from tests.outbound.helpers import queue


def test_outbox_commands(tmp_path: Path) -> None:
    config = tmp_path / "maild.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": "sqlite:///data/maild.db"},
                                      "storage": {"blob_dir": "blobs"},
                                      "outbound": {"transport": {"type": "file", "directory": "sent-mail"}}}))
    db = Database(f"sqlite:///{tmp_path / 'data' / 'maild.db'}")
    db.upgrade()
    blobs = BlobStore(tmp_path / "blobs")
    first, second = queue(db, blobs, "c1"), queue(db, blobs, "c2")

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(outbox_group, list(args), obj=AppContext(str(config), False))
        return result.exit_code, result.output

    code, out = run("list")
    assert code == 0 and "queued" in out and "key=c1" in out and "key=c2" in out
    assert run("cancel", str(second))[0] == 0
    assert run("cancel", str(second))[0] == 1  # already cancelled
    code, out = run("send-due", "--limit", "10")
    assert code == 0 and "sent 1, retry 0, failed 0" in out, out
    assert len(list((tmp_path / "sent-mail").glob(f"{first}-*.eml"))) == 1
    code, out = run("list", "--status", "cancelled")
    assert code == 0 and "key=c2" in out and "key=c1" not in out
    assert run("retry", str(second))[0] == 0
    assert outbox.get(db, second).status == "queued"
    assert run("retry", str(first))[0] == 1  # sent mail is never re-queued


def test_maild_send_and_send_due_are_audited_in_the_transaction_of_their_change(tmp_path: Path) -> None:
    from maild.cli.setup import initialise
    from maild.directory.service import add_contact, add_thirdparty
    from maild.services import audit
    from tests.helpers import config_at, invoke
    from tests.support.audit_refused import audit_refused

    config_file = initialise(tmp_path / "home", samples=False)
    db = Database(config_at(config_file).database_url)
    add_contact(db, thirdparty_id=add_thirdparty(db, name="ACME"), name="John", addresses=["john@acme.example"])
    folder = tmp_path / "home" / "templates" / "hello"
    folder.mkdir()
    (folder / "subject.txt").write_text("Hi\n")
    (folder / "body.txt").write_text("Hi {{ contact.name }}\n")

    sent = invoke(config_file, "send", "hello", "--to", "ACME", "--key", "k-1")
    row = outbox.by_key(db, "k-1")
    assert row is not None and row.status == "sent", sent.stdout
    [queued] = audit.entries(db, action="outbox.send")
    assert (queued.via, queued.target) == ("cli", f"outbox:{row.id}")
    assert queued.after == {"template": "hello", "to": "john@acme.example", "key": "k-1"}
    [pass_] = audit.entries(db, action="outbox.send_due")
    assert pass_.via == "cli" and pass_.after == {"claimed": [row.id], "limit": 100}

    with audit_refused(db):  # the outbox row and its entry commit together, or neither
        refused = invoke(config_file, "send", "hello", "--to", "ACME", "--key", "k-2", check=False)
    assert refused.returncode != 0 and outbox.by_key(db, "k-2") is None

    waiting = queue(db, BlobStore(config_at(config_file).blob_dir), "by-hand", to="john@acme.example")
    with audit_refused(db):  # a pass whose claim cannot be audited claims nothing
        assert invoke(config_file, "outbox", "send-due", check=False).returncode != 0
    assert outbox.get(db, waiting).status == "queued"
    assert "sent 1," in invoke(config_file, "outbox", "send-due").stdout
    assert invoke(config_file, "outbox", "send-due").stdout.startswith("sent 0,")  # nothing due: no entry
    assert [e.after["claimed"] for e in audit.entries(db, action="outbox.send_due")] == [[waiting], [row.id]]
