"""Owner-only permissions: the home `maild init` makes, the SQLite database (+ -wal, -shm), blobs, sent mail and
secrets are readable by maild's user alone, whatever the shell's umask; `maild config check` names what is not."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from maild.store.blobs import BlobStore
from maild.store.db import Database
from tests.helpers import invoke


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _open_to_others(root: Path) -> list[str]:
    """Every path under root (root included) that group or others may read, write or enter."""
    paths = [root, *root.rglob("*")]
    return [f"{p} {_mode(p):04o}" for p in paths if not p.is_symlink() and _mode(p) & 0o077]


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask of most shells (022): files 0644, folders 0755 unless maild says otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_init_and_ingest_leave_nothing_readable_by_others(tmp_path: Path, usual_umask: None) -> None:
    home = tmp_path / "home"
    invoke(None, "init", str(home))
    config = home / "maild.yaml"
    invoke(config, "ingest", "--once")  # the sample mails: database rows and blobs
    invoke(config, "thirdparty", "add", "Acme", "--address", "info@acme.example")
    invoke(config, "send", "new-thread", "--to", "Acme")  # sent by the file transport: an .eml in data/sent-mail
    invoke(config, "export", "thirdparties", "--format", "csv", "--output", str(home / "export.csv"))
    assert list((home / "data" / "blobs").rglob("*")), "the samples should have been stored as blobs"
    assert list((home / "data" / "sent-mail").glob("*.eml")) and (home / "export.csv").is_file()
    assert _open_to_others(home) == []
    assert _mode(home) == 0o700 and _mode(home / "data" / "maild.db") == 0o600
    assert "permissions: owner-only (database, blob store, maildir local, sent mail (file transport), " \
           "tracking secret)" in invoke(config, "config", "check").stdout


def test_database_and_blobs_are_private_in_process(tmp_path: Path, usual_umask: None) -> None:
    """Without the command's umask (maild used as a library, the parse workers): explicit modes, WAL included."""
    database = Database(f"sqlite:///{tmp_path / 'deep' / 'data' / 'maild.db'}")
    try:
        database.upgrade()
        with database.engine.connect() as connection:  # the connection keeps -wal and -shm in place
            connection.exec_driver_sql("SELECT 1")
            files = sorted((tmp_path / "deep" / "data").iterdir())
            assert [f.name for f in files] == ["maild.db", "maild.db-shm", "maild.db-wal"]
            assert [_mode(f) for f in files] == [0o600, 0o600, 0o600]
    finally:
        database.dispose()
    assert _mode(tmp_path / "deep") == 0o700 and _mode(tmp_path / "deep" / "data") == 0o700
    store = BlobStore(tmp_path / "blobs")
    digest = store.put(b"a mail")
    assert _open_to_others(tmp_path / "blobs") == []
    assert _mode(store.path(digest)) == 0o600


def test_config_check_names_what_others_can_read(tmp_path: Path, usual_umask: None) -> None:
    home = tmp_path / "home"
    invoke(None, "init", str(home), "--no-samples")
    config = home / "maild.yaml"
    password = home / "imap.password"
    password.write_text("secret\n")  # 0644 under the usual umask
    data = yaml.safe_load(config.read_text())
    data["sources"].append({"name": "sales", "type": "imap", "host": "imap.example.test", "username": "sales",
                            "password_file": "imap.password"})
    config.write_text(yaml.safe_dump(data))
    os.chmod(home / "data" / "maild.db", 0o644)
    os.chmod(home / "data" / "blobs", 0o755)
    result = invoke(config, "config", "check")
    assert result.returncode == 0  # a warning: the config itself is valid
    assert "permissions: owner-only" not in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    db, blobs = home / "data" / "maild.db", home / "data" / "blobs"
    assert warnings == [
        f"warning: database {db} is 0644, open to group and others (fix: chmod 600 {db})",
        f"warning: blob store {blobs} is 0755, open to group and others (fix: chmod 700 {blobs})",
        f"warning: source sales password_file {password} is 0644, open to group and others "
        f"(fix: chmod 600 {password})",
    ]
    assert "secret" not in result.stdout + result.stderr
    for path in (db, password):
        os.chmod(path, 0o600)
    os.chmod(blobs, 0o700)
    again = invoke(config, "config", "check")
    assert not [line for line in again.stderr.splitlines() if line.startswith("warning:")]
    assert "permissions: owner-only (database, blob store, maildir local, " in again.stdout


def test_the_command_sets_an_owner_only_umask(tmp_path: Path) -> None:
    """What the daemon and every command create later (logs, exports, sent .eml) is owner-only too."""
    script = "import os, maild.cli.main as m, sys; sys.argv = ['maild', '--help']\n" \
             "try:\n    m.main()\nexcept SystemExit:\n    pass\nprint(oct(os.umask(0)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            preexec_fn=lambda: os.umask(0o022), cwd=tmp_path)
    assert result.stdout.strip().splitlines()[-1] == "0o77", result.stderr
