"""UID FETCH of whole messages and of their sizes, read without imapclient's general response parser.

imapclient lexes every FETCH response in Python, which costs more per message than reading it. The answers
ingest asks for have one shape on the servers we know (`* 7 FETCH (UID 7 BODY[] {2147}` + literal + `)`, and
`* 7 FETCH (UID 7 RFC822.SIZE 2147)`): those are read with one regular expression each. Any other response of
the same command (items in another order, an unsolicited FLAGS, a server's extra item) sends the whole answer
to imapclient's parser, so the result is always what `IMAPClient.fetch` returns for these items.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from imapclient import IMAPClient
from imapclient.response_parser import parse_fetch_response

_BODY_HEAD = re.compile(rb"\d+ \((?:UID (\d+) )?BODY\[\] \{\d+\}")
_BODY_TAIL = re.compile(rb"(?: UID (\d+))?\)")
_SIZE = re.compile(rb"\d+ \((?:UID (\d+) RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+) UID (\d+))\)")


def fetch_bodies(client: IMAPClient, uids: Sequence[int]) -> dict[int, bytes | None]:
    """UID -> raw message (BODY.PEEK[]: nothing is marked \\Seen) for the UIDs the server still has."""
    return read_bodies(_uid_fetch(client, uids, "(BODY.PEEK[])"), set(uids))


def fetch_sizes(client: IMAPClient, uids: Sequence[int]) -> dict[int, int]:
    """UID -> RFC822.SIZE for the UIDs the server still has."""
    return read_sizes(_uid_fetch(client, uids, "(RFC822.SIZE)"), set(uids))


def read_bodies(data: list[Any], wanted: set[int]) -> dict[int, bytes | None]:
    """The messages of wanted UIDs in a UID FETCH (BODY.PEEK[])'s raw responses (None: a response without it)."""
    found = _bodies(data, wanted)
    return found if found is not None else _generic(data, wanted, lambda item: item.get(b"BODY[]"))


def read_sizes(data: list[Any], wanted: set[int]) -> dict[int, int]:
    """The sizes of wanted UIDs in a UID FETCH (RFC822.SIZE)'s raw responses."""
    found: dict[int, int] = {}
    for line in data:
        match = _SIZE.fullmatch(line) if isinstance(line, bytes) else None
        if match is None:
            return _generic(data, wanted, lambda item: int(item.get(b"RFC822.SIZE", 0)))
        uid, size = (int(match[1]), int(match[2])) if match[1] else (int(match[4]), int(match[3]))
        if uid in wanted:
            found[uid] = size
    return found


def _uid_fetch(client: IMAPClient, uids: Sequence[int], items: str) -> list[Any]:
    """The raw untagged FETCH responses of one UID FETCH, as imaplib stores them (imapclient's own steps)."""
    if not uids:
        return []
    imap = client._imap
    tag = imap._command("UID", "FETCH", ",".join(str(uid) for uid in uids), items)
    typ, data = imap._command_complete("FETCH", tag)
    client._checkok("fetch", typ, data)
    typ, data = imap._untagged_response(typ, data, "FETCH")
    return [] if data == [None] else list(data)


def _bodies(data: list[Any], wanted: set[int]) -> dict[int, bytes | None] | None:
    """The common shape: (head, literal) then the closing `)`; None at the first response of another shape."""
    found: dict[int, bytes | None] = {}
    if len(data) % 2:
        return None
    for position in range(0, len(data), 2):
        item, tail = data[position], data[position + 1]
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(tail, bytes)):
            return None
        head = _BODY_HEAD.fullmatch(item[0])
        end = _BODY_TAIL.fullmatch(tail)
        if head is None or end is None or (head[1] is None) == (end[1] is None):
            return None  # no UID, or two
        uid = int(head[1] or end[1])
        if uid in wanted:
            found[uid] = item[1]
    return found


def _generic(data: list[Any], wanted: set[int], value: Callable[[dict[bytes, Any]], Any]) -> dict[int, Any]:
    """imapclient's parser, for any shape (it merges the responses of one UID)."""
    parsed = parse_fetch_response(data, True, True)
    return {uid: value(item) for uid, item in parsed.items() if uid in wanted}
