"""IMAP LIST that survives folder names imapclient's response parser cannot read (say ``Projekt[alt``).

imapclient lexes an unquoted ``[`` as the start of a bracketed section and gives up on the whole LIST when
no ``]`` follows, so one such folder (made by a person, or by an older maild) would break every look-up of
that account: the Sent folder for copies of sent mail, the folders filing creates. Here the LIST is first
read by imapclient; when it cannot, the same command's raw lines are parsed by `parse_list_line`, which
knows the three forms RFC 3501 gives a name (atom, quoted string, literal).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, ProtocolError
from imapclient.imap_utf7 import decode as decode_utf7
from imapclient.imap_utf7 import encode as encode_utf7

log = logging.getLogger("maild.imap")

Folder = tuple[tuple[bytes, ...], bytes | None, str]  # (flags, delimiter, name), as imapclient returns them

_LINE = re.compile(rb'^\s*\((?P<flags>[^)]*)\)\s+(?P<delim>NIL|"(?:\\.|[^"\\])*")\s+(?P<name>.*?)\s*$', re.I | re.S)
_LITERAL = re.compile(rb"\{\d+\+?\}\s*$")


def list_folders(client: IMAPClient, directory: str = "", pattern: str = "*") -> list[Folder]:
    """LIST `directory` `pattern`: (flags, delimiter, name) per folder, whatever characters the names hold.

    Names are str: decoded from modified UTF-7 as imapclient does, or as sent when `client.folder_encode` is off.
    """
    try:
        return [(tuple(flags), delimiter, name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name))
                for flags, delimiter, name in client.list_folders(directory, pattern)]
    except ProtocolError as exc:
        log.info("imapclient could not parse a LIST response (%s); reading it line by line", exc)
    typ, data = client._imap.list(_quote(client, directory), _quote(client, pattern))
    if typ != "OK":
        raise IMAPClientError(f"LIST failed: {data!r}")
    folders = []
    for item in data:
        if item in (None, b""):
            continue
        parsed = parse_list_line(item)
        if parsed is None:
            log.warning("skipped a LIST line that cannot be read: %r", item)
            continue
        flags, delimiter, raw_name = parsed
        folders.append((flags, delimiter, decode_utf7(raw_name) if client.folder_encode else
                        raw_name.decode("utf-8", "replace")))
    return folders


def folder_exists(client: IMAPClient, name: str) -> bool:
    """Whether the folder `name` exists (a \\NonExistent placeholder does not count)."""
    return any(b"\\nonexistent" not in {f.lower() for f in flags} for flags, _, _ in list_folders(client, "", name))


def find_special_folder(client: IMAPClient, flag: bytes) -> str | None:
    """The folder carrying the SPECIAL-USE `flag` (e.g. ``b"\\\\Sent"``), found as imapclient would find it."""
    try:
        return client.find_special_folder(flag)
    except ProtocolError as exc:
        log.info("imapclient could not parse a LIST response (%s); reading it line by line", exc)
    wanted = flag.lower()
    return next((name for flags, _, name in list_folders(client) if wanted in {f.lower() for f in flags}), None)


def parse_list_line(item: bytes | tuple[bytes, bytes]) -> tuple[tuple[bytes, ...], bytes | None, bytes] | None:
    """One untagged LIST line as imaplib hands it over -> (flags, delimiter, raw name), or None if unreadable.

    imaplib gives a line whose name came as a literal as (line up to ``{n}``, the literal's bytes).
    """
    literal = None
    if isinstance(item, tuple):
        item, literal = item[0], item[1]
    match = _LINE.match(item)
    if match is None:
        return None
    flags = tuple(match["flags"].split())
    delim_text = match["delim"]
    delimiter = None if delim_text.upper() == b"NIL" else _unquote(delim_text)
    name = match["name"]
    if literal is not None and _LITERAL.fullmatch(name):
        return flags, delimiter, literal
    if name.startswith(b'"'):
        if len(name) < 2 or not name.endswith(b'"'):
            return None
        return flags, delimiter, _unquote(name)
    return (flags, delimiter, name) if name else None


def _unquote(text: bytes) -> bytes:
    return re.sub(rb"\\(.)", rb"\1", text[1:-1])


def _quote(client: IMAPClient, value: str) -> Any:
    raw = encode_utf7(value) if client.folder_encode else value.encode("utf-8")
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
