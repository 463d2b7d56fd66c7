"""Issue 11 item 15: a message over `ingest.max_message_bytes` is never read whole into memory.

IMAP: RFC822.SIZE is checked before the FETCH, and the message comes in BODY.PEEK[]<offset.length> pieces
straight into the blob store; Maildir: the file size is checked before reading, and the file is copied in
pieces. Either way the message is quarantined as oversized with its raw bytes kept, and the peak of memory
allocated meanwhile (tracemalloc) stays far below the message's size.
"""

from __future__ import annotations

import hashlib
import mailbox
import tracemalloc
from pathlib import Path

from sqlalchemy import select

from maild.daemon import Daemon
from maild.store.blobs import BlobStore
from maild.store.models import Location, Message, Quarantine
from tests.conftest import Mailbox
from tests.helpers import config_at, invoke, make_message, write_config

LIMIT = 1024 * 1024
BIG = 24 * LIMIT  # many times the limit
PEAK_ALLOWED = 8 * LIMIT  # a few 1 MB pieces in flight (and their copies): a third of the message


def _big_message() -> bytes:
    line = b"0123456789abcdef" * 4 + b"\r\n"  # 66 bytes
    body = line * (BIG // len(line))
    head = (b"From: big@customer.example\r\nTo: sales@example.test\r\nSubject: huge scan\r\n"
            b"Message-ID: <huge@customer.example>\r\nContent-Type: text/plain\r\n\r\n")
    return head + body


def _ingest_measuring_peak(daemon: Daemon) -> tuple[int, int]:
    """Messages handled, and the most memory allocated at once above what was allocated before the pass."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        report = daemon.ingest_once()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert report.errors == {}
    return report.handled, peak


def _check_kept(daemon: Daemon, raw: bytes) -> None:
    with daemon.db.engine.connect() as conn:
        entry, = conn.execute(select(Quarantine.__table__)).all()
        locations = conn.execute(select(Location.__table__)).all()
        messages = conn.execute(select(Message.__table__.c.subject)).scalars().all()
    assert entry.reason == f"message is {len(raw)} bytes, over ingest.max_message_bytes ({LIMIT})"
    assert entry.size == len(raw)
    assert entry.raw_sha256 == hashlib.sha256(raw).hexdigest()
    blobs = BlobStore(daemon.config.blob_dir)
    with blobs.path(entry.raw_sha256).open("rb") as handle:
        assert hashlib.file_digest(handle, "sha256").hexdigest() == entry.raw_sha256, "the raw bytes are kept"
    assert messages == ["small"], "the folder goes on: the small mail is stored"
    assert sorted(loc.quarantine_id is not None for loc in locations) == [False, True]


def test_oversized_maildir_file_is_copied_in_pieces(tmp_path: Path, db_url: str) -> None:
    box = mailbox.Maildir(tmp_path / "mail", create=True)
    box.add(make_message(subject="small"))
    config = write_config(tmp_path / "home", db_url, [{"name": "local", "type": "maildir", "path": str(box._path)}],
                          max_message_bytes=LIMIT)
    daemon = Daemon(config_at(config))
    assert daemon.ingest_once().handled == 1  # warm: every module imported, the schema made
    raw = _big_message()
    box.add(raw)
    handled, peak = _ingest_measuring_peak(Daemon(config_at(config)))
    print(f"peak allocation {peak} bytes for a {len(raw)} byte message")
    assert handled == 1
    assert peak < PEAK_ALLOWED, f"peak {peak} bytes while ingesting a {len(raw)} byte message"
    _check_kept(daemon, raw)
    assert Daemon(config_at(config)).ingest_once().handled == 0, "recorded: not taken again"


def test_oversized_imap_message_is_fetched_in_pieces(tmp_path: Path, db_url: str, mailbox: Mailbox) -> None:
    mailbox.append([make_message(subject="small")])
    config = write_config(tmp_path / "home", db_url, [mailbox.source()], max_message_bytes=LIMIT)
    daemon = Daemon(config_at(config))
    assert daemon.ingest_once().handled == 1  # warm: every module imported, the schema made
    raw = _big_message()
    mailbox.append([raw])
    handled, peak = _ingest_measuring_peak(Daemon(config_at(config)))
    print(f"peak allocation {peak} bytes for a {len(raw)} byte message")
    assert handled == 1
    assert peak < PEAK_ALLOWED, f"peak {peak} bytes while ingesting a {len(raw)} byte message"
    _check_kept(daemon, raw)
    mailbox.append([make_message(subject="later")])
    assert Daemon(config_at(config)).ingest_once().handled == 1, "the checkpoint went past the big one"


def test_quarantine_retry_of_an_oversized_message_refuses_without_reading_it(tmp_path: Path, db_url: str) -> None:
    from maild.ingest import quarantine as q

    box = mailbox.Maildir(tmp_path / "mail", create=True)
    box.add(make_message(subject="small"))
    raw = _big_message()
    box.add(raw)
    config = write_config(tmp_path / "home", db_url, [{"name": "local", "type": "maildir", "path": str(box._path)}],
                          max_message_bytes=LIMIT)
    daemon = Daemon(config_at(config))
    assert daemon.ingest_once().handled == 2
    entry_id, = q.pending_ids(daemon.db)
    blobs = BlobStore(daemon.config.blob_dir)
    q.retry(daemon.db, blobs, entry_id, LIMIT)  # warm: every module imported
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        outcome = q.retry(daemon.db, blobs, entry_id, 2 * LIMIT)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < PEAK_ALLOWED, f"peak {peak} bytes while retrying a {len(raw)} byte message"
    assert outcome.message_id is None and outcome.oversized_bytes == len(raw)
    assert outcome.reason == f"message is {len(raw)} bytes, over ingest.max_message_bytes ({2 * LIMIT})"
    with daemon.db.engine.connect() as conn:
        kept = conn.execute(select(Quarantine.__table__)).one()
    assert (kept.reason, kept.retries) == (outcome.reason, 2)

    retried = invoke(config, "quarantine", "retry", str(entry_id), check=False)
    assert retried.returncode == 1
    assert retried.stdout.strip() == (
        f"{entry_id}: still quarantined: message is {len(raw)} bytes, over ingest.max_message_bytes ({LIMIT}); "
        f"not read (retry with --max-bytes {len(raw)} to parse it)")
    shown = invoke(config, "quarantine", "show", str(entry_id), "--raw")
    assert hashlib.sha256(shown.stdout.encode("utf-8", "surrogateescape")).hexdigest() == kept.raw_sha256

    stored = invoke(config, "quarantine", "retry", str(entry_id), "--max-bytes", str(len(raw)))
    assert "stored as message" in stored.stdout
