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
