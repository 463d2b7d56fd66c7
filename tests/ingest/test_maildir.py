from __future__ import annotations

import mailbox
import shutil
from pathlib import Path

from sqlalchemy import func, select

from maild.daemon import Daemon
from maild.services import audit
from maild.store.db import Database
from maild.store.models import Event, Location, Message
from tests.helpers import config_at, invoke, make_message, status_json, write_config
from tests.support.audit_refused import audit_refused


def _maildir(path: Path) -> mailbox.Maildir:
    return mailbox.Maildir(path, create=True)


RECEIVED = Event.__table__.c.type == "mail.received"


def _count(daemon: Daemon, table: type, *where: object) -> int:
    with daemon.db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table.__table__).where(*where)).scalar_one()


def test_maildir_new_and_cur_ingested_once_and_moves_are_not_new_mail(tmp_path: Path, db_url: str) -> None:
    box = _maildir(tmp_path / "mail")
    first = box.add(make_message(subject="one"))
    box.add(make_message(subject="two"))
    seen = mailbox.MaildirMessage(make_message(subject="three"))
    seen.set_subdir("cur")
    seen.add_flag("S")
    box.add(seen)
    config = write_config(tmp_path / "home", db_url, [{"name": "local", "type": "maildir", "path": str(box._path)}])
    daemon = Daemon(config_at(config))
    assert daemon.ingest_once().handled == 3
    # A mail client moves a message from new/ to cur/ and flags it: same key, not a new message.
    message = box.get_message(first)
    message.set_subdir("cur")
    message.add_flag("RS")
    box[first] = message
    box.add(make_message(subject="four"))
    report = Daemon(config_at(config)).ingest_once()
    assert report.handled == 1
    assert (_count(daemon, Message), _count(daemon, Location), _count(daemon, Event, RECEIVED)) == (4, 4, 4)
    status = status_json(config)
    assert status["totals"] == {"messages": 4, "quarantined": 0, "locations": 4, "events": 8}
    assert status["folders"][0]["lag"] == 0


def test_same_bytes_in_two_folders_stored_once_shared_message_id_kept_twice(tmp_path: Path, db_url: str) -> None:
    same = make_message(subject="copy", message_id="<same@x.example>")
    first = _maildir(tmp_path / "a")
    second = _maildir(tmp_path / "b")
    first.add(same)
    second.add(same)
    second.add(make_message(subject="different content, same id", message_id="<same@x.example>"))
    config = write_config(tmp_path / "home", db_url, [
        {"name": "a", "type": "maildir", "path": str(first._path)},
        {"name": "b", "type": "maildir", "path": str(second._path)}])
    daemon = Daemon(config_at(config))
    assert daemon.ingest_once().handled == 3
    with daemon.db.engine.connect() as conn:
        ids = conn.execute(select(Message.__table__.c.header_message_id)).scalars().all()
        pointers = conn.execute(select(Location.__table__.c.message_id)).scalars().all()
    assert ids == ["<same@x.example>", "<same@x.example>"]
    assert len(pointers) == 3 and len(set(pointers)) == 2
    assert _count(daemon, Event, RECEIVED) == 2, "a duplicate location is not a second mail.received"


def test_empty_and_oversize_files_are_quarantined_and_retry_stores_them(tmp_path: Path, db_url: str) -> None:
    box = _maildir(tmp_path / "mail")
    box.add(b"")
    big = make_message(subject="big", body="y" * 5000)
    box.add(big)
    box.add(make_message(subject="fine"))
    config = write_config(tmp_path / "home", db_url, [{"name": "m", "type": "maildir", "path": str(box._path)}],
                          max_message_bytes=2000)
    invoke(config, "ingest", "--once")
    status = status_json(config)
    assert status["totals"]["messages"] == 1
    assert status["totals"]["quarantined"] == 2
    assert status["totals"]["locations"] == 3
    listing = invoke(config, "quarantine", "list").stdout
    assert "empty message (zero bytes)" in listing
    assert "over ingest.max_message_bytes" in listing
    big_id = next(line.split()[0] for line in listing.splitlines() if "max_message_bytes" in line)
    assert invoke(config, "quarantine", "show", big_id, "--raw").stdout.encode() == big
    db = Database(config_at(config).database_url)
    with audit_refused(db):  # the retry and its audit entry commit together, or neither
        refused = invoke(config, "quarantine", "retry", big_id, "--max-bytes", "100000", check=False)
    assert refused.returncode != 0 and status_json(config)["totals"]["quarantined"] == 2
    retried = invoke(config, "quarantine", "retry", big_id, "--max-bytes", "100000")
    assert "stored as message" in retried.stdout
    assert status_json(config)["totals"] == {"messages": 2, "quarantined": 1, "locations": 3, "events": 4}
    [entry] = audit.entries(db, action="quarantine.retry")
    assert entry.via == "cli" and entry.target == f"quarantine:{big_id}"
    assert "max_message_bytes" in entry.before["reason"] and entry.before["retries"] == 0
    assert entry.after["message_id"] == int(retried.stdout.split()[-1]) and entry.after["reason"] is None


def test_missing_maildir_is_reported_not_fatal(tmp_path: Path) -> None:
    good = _maildir(tmp_path / "good")
    good.add(make_message())
    config = write_config(tmp_path / "home", f"sqlite:///{tmp_path / 'm.db'}", [
        {"name": "gone", "type": "maildir", "path": str(tmp_path / "nowhere")},
        {"name": "good", "type": "maildir", "path": str(good._path)}])
    result = invoke(config, "ingest", "--once", check=False)
    assert result.returncode == 1
    assert "error: gone: FileNotFoundError" in result.stderr
    assert "is not a Maildir" in result.stderr
    status = status_json(config)
    assert status["totals"]["messages"] == 1
    assert "is not a Maildir" in next(f for f in status["folders"] if f["source"] == "gone")["last_error"]


def test_corpus_through_a_maildir(tmp_path: Path) -> None:
    from tests.helpers import corpus_files

    files = corpus_files()
    box = tmp_path / "corpus"
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True)
    for index, path in enumerate(files):
        shutil.copyfile(path, box / "new" / f"{index:04d}.corpus")
    config = write_config(tmp_path / "home", f"sqlite:///{tmp_path / 'm.db'}",
                          [{"name": "corpus", "type": "maildir", "path": str(box)}])
    invoke(config, "ingest", "--once")
    totals = status_json(config)["totals"]
    assert totals["locations"] == len(files), "every file has a location: none lost"
    distinct = len({p.read_bytes() for p in files if p.stat().st_size})
    assert totals["messages"] + totals["quarantined"] >= distinct


def test_unreadable_file_is_retried_not_lost(tmp_path: Path) -> None:
    box = _maildir(tmp_path / "mail")
    box.add(make_message(subject="readable"))
    blocked_key = box.add(make_message(subject="blocked for now"))
    blocked = Path(box._path) / "new" / blocked_key
    config = write_config(tmp_path / "home", f"sqlite:///{tmp_path / 'm.db'}",
                          [{"name": "m", "type": "maildir", "path": str(box._path)}])
    # A directory in the file's place makes reading fail with an OSError even for root.
    content = blocked.read_bytes()
    blocked.unlink()
    blocked.mkdir()
    assert Daemon(config_at(config)).ingest_once().errors == {}
    assert status_json(config)["totals"]["messages"] == 1
    blocked.rmdir()
    blocked.write_bytes(content)
    assert Daemon(config_at(config)).ingest_once().handled == 1
    assert status_json(config)["totals"]["messages"] == 2


def test_same_name_in_new_and_cur_with_different_content_are_both_ingested(tmp_path: Path, db_url: str) -> None:
    """A copy left in cur/ beside a new delivery of the same unique name: two mails, each once, every pass."""
    box = _maildir(tmp_path / "mail")
    name = "1700000000.M1P2.host"
    box_path = Path(box._path)
    (box_path / "new" / name).write_bytes(make_message(subject="the new one"))
    (box_path / "cur" / f"{name}:2,S").write_bytes(make_message(subject="the old one"))
    twin = "1700000001.M3P4.host"  # the same bytes twice (a move caught half-way): one message
    same = make_message(subject="twin")
    (box_path / "new" / twin).write_bytes(same)
    (box_path / "cur" / f"{twin}:2,").write_bytes(same)
    config = write_config(tmp_path / "home", db_url, [{"name": "m", "type": "maildir", "path": str(box_path)}])
    daemon = Daemon(config_at(config))
    assert daemon.ingest_once().handled == 3
    assert Daemon(config_at(config)).ingest_once().handled == 0  # stable keys: nothing again
    with daemon.db.engine.connect() as conn:
        subjects = sorted(conn.execute(select(Message.__table__.c.subject)).scalars())
    assert subjects == ["the new one", "the old one", "twin"]
    assert _count(daemon, Event, RECEIVED) == 3
    # The client finally removes the stale copy: the survivor gets its plain name back as key, a known message.
    (box_path / "cur" / f"{name}:2,S").unlink()
    Daemon(config_at(config)).ingest_once()
    assert _count(daemon, Message) == 3 and _count(daemon, Event, RECEIVED) == 3
