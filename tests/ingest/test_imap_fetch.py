"""UID FETCH read without imapclient's parser: the same answers as `IMAPClient.fetch`, whatever the shape."""

from __future__ import annotations

import logging
from pathlib import Path

from maild.config import ImapSourceConfig
from maild.imap.connection import connect, quietly_logout
from maild.imap.fetch import fetch_bodies, fetch_sizes, read_bodies, read_sizes
from tests.conftest import Mailbox
from tests.helpers import make_message


def test_bodies_and_sizes_are_what_imapclient_reads(mailbox: Mailbox) -> None:
    messages = [make_message(subject=f"m{i}", body="x" * (100 * i)) for i in range(5)]
    mailbox.append(messages)
    with mailbox.server.client(mailbox.user, mailbox.password) as imap:
        imap.select_folder("INBOX", readonly=True)
        uids = sorted(imap.search("ALL"))
        wanted = [*uids[1:], 999_999]  # one UID the server does not have
        expected = imap.fetch(wanted, ["BODY.PEEK[]"])
        assert fetch_bodies(imap, wanted) == {uid: data[b"BODY[]"] for uid, data in expected.items()}
        sizes = imap.fetch(wanted, ["RFC822.SIZE"])
        assert fetch_sizes(imap, wanted) == {uid: data[b"RFC822.SIZE"] for uid, data in sizes.items()}
        assert len(expected) == 4
        assert fetch_bodies(imap, []) == {} and fetch_sizes(imap, []) == {}
        flags = imap.get_flags(uids)
        assert all(b"\\Seen" not in f for f in flags.values())  # BODY.PEEK: nothing marked read


def test_other_shapes_are_read_by_imapclients_parser() -> None:
    usual = [(b"1 (UID 7 BODY[] {3}", b"abc"), b")", (b"2 (UID 8 BODY[] {2}", b"de"), b")"]
    assert read_bodies(usual, {7, 8}) == {7: b"abc", 8: b"de"}
    assert read_bodies(usual, {8}) == {8: b"de"}  # unsolicited answers for other messages are dropped
    uid_last = [(b"1 (BODY[] {3}", b"abc"), b" UID 7)"]
    assert read_bodies(uid_last, {7}) == {7: b"abc"}
    with_flags = [(b"1 (UID 7 BODY[] {3}", b"abc"), b")", b"1 (UID 7 FLAGS (\\Seen))", b"5 (FLAGS ())"]
    assert read_bodies(with_flags, {7}) == {7: b"abc"}
    flags_inside = [(b"1 (UID 7 FLAGS (\\Seen) BODY[] {3}", b"abc"), b")"]
    assert read_bodies(flags_inside, {7}) == {7: b"abc"}
    only_flags = [b"1 (UID 7 FLAGS (\\Seen))"]
    assert read_bodies(only_flags, {7}) == {7: None}  # the caller stores it as an empty message
    assert read_bodies([], {7}) == {}
    assert read_sizes([b"1 (UID 7 RFC822.SIZE 120)", b"2 (RFC822.SIZE 5 UID 8)"], {7, 8}) == {7: 120, 8: 5}
    assert read_sizes([b"1 (UID 7 RFC822.SIZE 120)", b"2 (UID 8 RFC822.SIZE 5 FLAGS (\\Seen))"], {7, 8}) == \
        {7: 120, 8: 5}
    assert read_sizes([b"1 (UID 7 RFC822.SIZE 120)", b"3 (FLAGS ())"], {7}) == {7: 120}


def test_imaplib_traces_only_when_its_logger_prints(mailbox: Mailbox, tmp_path: Path) -> None:
    """imapclient's level 5 makes imaplib format the repr of every fetched message even when nobody logs it."""
    cfg = ImapSourceConfig.model_validate(mailbox.source())
    client = connect(cfg, tmp_path)
    try:
        assert client._imap.debug == 0
    finally:
        quietly_logout(client)
    trace = logging.getLogger("imapclient.imaplib")
    previous = trace.level
    trace.setLevel(logging.DEBUG)
    try:
        client = connect(cfg, tmp_path)
        try:
            assert client._imap.debug == 5
        finally:
            quietly_logout(client)
    finally:
        trace.setLevel(previous)
