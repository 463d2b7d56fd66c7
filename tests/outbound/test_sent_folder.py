from __future__ import annotations

import asyncio
from pathlib import Path

from imapclient.imapclient import SEEN

from maild.config import Config
from maild.imap.sent import sent_folder_append
from maild.outbound import outbox
from maild.outbound.sender import OutboxSender, build_sent_folder
from maild.outbound.smtp import FileTransport
from maild.store.blobs import BlobStore
from maild.store.db import Database
from tests.conftest import Mailbox
from tests.outbound.helpers import make_raw, queue


def sent_messages(mailbox: Mailbox) -> list[tuple[bytes, tuple[bytes, ...]]]:
    with mailbox.server.client(mailbox.user, mailbox.password) as imap:
        imap.select_folder("Sent", readonly=True)
        found = imap.fetch(imap.search("ALL"), ["BODY.PEEK[]", "FLAGS"])
        return [(item[b"BODY[]"], item[b"FLAGS"]) for _, item in sorted(found.items())]


def test_append_to_the_special_use_sent_folder(mailbox: Mailbox) -> None:
    raw = make_raw("s1")
    with mailbox.server.client(mailbox.user, mailbox.password) as imap:
        assert sent_folder_append(imap, raw) == "Sent"
    ((body, flags),) = sent_messages(mailbox)
    assert body == raw and SEEN in flags


def test_sender_copies_sent_mail_and_records_it(mailbox: Mailbox, tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'maild.db'}")
    db.upgrade()
    blobs = BlobStore(tmp_path / "blobs")
    config = Config.model_validate({"sources": [mailbox.source("mbox")],
                                    "outbound": {"sent_folder_source": "mbox"}, "base_dir": tmp_path})
    append = build_sent_folder(config)
    assert append is not None
    row_id = queue(db, blobs, "s2")
    sender = OutboxSender(db, blobs, FileTransport(tmp_path / "out"), "me", append)
    assert asyncio.run(sender.send_due(10))["sent"] == 1
    row = outbox.get(db, row_id)
    assert row.status == "sent" and row.sent_folder_done
    ((body, _),) = sent_messages(mailbox)
    assert body == blobs.get(row.raw_sha256)


def test_a_failed_copy_is_swept_later(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'maild.db'}")
    db.upgrade()
    blobs = BlobStore(tmp_path / "blobs")
    copies: list[bytes] = []
    fail = [True]

    def append(raw: bytes) -> None:
        if fail[0]:
            raise ConnectionError("IMAP down")
        copies.append(raw)

    row_id = queue(db, blobs, "s3")
    sender = OutboxSender(db, blobs, FileTransport(tmp_path / "out"), "me", append)
    assert asyncio.run(sender.send_due(10))["sent"] == 1
    assert not outbox.get(db, row_id).sent_folder_done
    fail[0] = False
    assert asyncio.run(sender.sweep_sent_folder()) == 1
    assert outbox.get(db, row_id).sent_folder_done and len(copies) == 1


def test_a_notice_to_one_of_us_is_not_copied_to_the_shared_sent_folder(mailbox: Mailbox, tmp_path: Path) -> None:
    from maild.outbound.sender import build_sender

    db = Database(f"sqlite:///{tmp_path / 'maild.db'}")
    db.upgrade()
    config = Config.model_validate({"sources": [mailbox.source("mbox")], "database": {"url": db.url},
                                    "storage": {"blob_dir": str(tmp_path / "blobs")},
                                    "matching": {"own_domains": ["ourco.example"]},
                                    "outbound": {"sent_folder_source": "mbox",
                                                 "transport": {"type": "file", "directory": str(tmp_path / "out")}},
                                    "base_dir": tmp_path})
    blobs = BlobStore(config.blob_dir)
    notice = queue(db, blobs, "n1", to="lena@ourco.example")  # the owner notice of the shared-inbox pack
    customer = queue(db, blobs, "c1", to="anna@customer.example")
    assert asyncio.run(build_sender(config, db, "me").send_due(10))["sent"] == 2
    assert outbox.get(db, notice).sent_folder_done and outbox.get(db, customer).sent_folder_done
    ((body, _),) = sent_messages(mailbox)
    assert body == blobs.get(outbox.get(db, customer).raw_sha256)
