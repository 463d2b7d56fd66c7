"""The IMAP side of filing, on a logged-in `IMAPClient` whose source folder is SELECTed read-write.

All message arguments are UIDs (imapclient's default `use_uid=True`). Folder paths are ``/``-separated
(see `maild.filing.folders`); `ensure_folder` turns one into the server's form and returns it, and that
server path is what `move` and `copy` take. Folder names are passed as str, which imapclient encodes to
modified UTF-7 (RFC 3501 5.1.3) itself. A name the server refuses is tried in safer forms (`name_forms`);
when it refuses them all, `FolderRefused` says so and the task fails for good instead of being retried.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from maild.filing.folders import ascii_fold, compact_level, split_path, to_server_path
from maild.imap.folders import folder_exists, list_folders

log = logging.getLogger("maild.filing")

DELETED = b"\\Deleted"
SETTABLE_SYSTEM_FLAGS = {"\\seen": "\\Seen", "\\flagged": "\\Flagged", "\\answered": "\\Answered",
                         "\\draft": "\\Draft"}
MAX_KEYWORD_CHARS = 50  # Dovecot's default mail_max_keyword_length
_NOT_ATOM_CHAR = re.compile(r'[^\x21-\x7e]|[(){%*"\\\]]')  # RFC 3501 atom-specials, CTL, SP, non-ASCII
# RFC 5530 response codes of a CREATE that failed for a reason other than the name: not worth another name.
TRANSIENT_CODES = ("UNAVAILABLE", "SERVERBUG", "INUSE", "LIMIT", "OVERQUOTA", "CONTACTADMIN", "EXPUNGEISSUED")


class FolderRefused(Exception):
    """The server refused to create a folder under every name tried: a lasting answer, not worth a retry."""


def hierarchy(client: IMAPClient) -> tuple[str, str | None]:
    """(personal namespace prefix, hierarchy delimiter) of the server, e.g. ("", "/") or ("INBOX.", ".")."""
    if client.has_capability("NAMESPACE"):
        personal = client.namespace().personal
        if personal:
            prefix, delimiter = personal[0]
            return prefix or "", delimiter or None
    rows = list_folders(client, "", "")
    delimiter = rows[0][1] if rows else None
    if isinstance(delimiter, bytes):
        delimiter = delimiter.decode("ascii", "replace")
    return "", delimiter or None


def ensure_folder(client: IMAPClient, path: str) -> str:
    """Create the folder `path` (``/``-separated) and its missing parents, subscribe them; return the server path.

    Each level that does not exist yet is created on its own (Dovecot would otherwise leave a parent as a
    \\Noselect placeholder) and subscribed. When the server refuses a name (Dovecot's Maildir++ layout
    refuses ``.``: "[CANNOT] Character not allowed in mailbox name"; a long name: "Mailbox name too long"),
    the next of `name_forms` is tried; the returned server path says which folder was used. Refused in
    every form: `FolderRefused`. A failure that is not about the name (connection, quota, server bug)
    propagates as it is.
    """
    levels = split_path(path)
    if not levels:
        raise ValueError("empty folder path")
    if any(char in level for level in levels for char in "*%"):
        raise ValueError(f"IMAP wildcard in folder path {path!r}")
    prefix, delimiter = hierarchy(client)
    refusals: list[str] = []
    for form in name_forms(levels):
        try:
            return _ensure_levels(client, prefix, delimiter, form)
        except _NameRefused as exc:
            refusals.append(str(exc))
            log.info("server refused the folder name; trying a safer one", extra={"fields": {
                "folder": "/".join(form), "error": str(exc)}})
    raise FolderRefused(f"the server refused the folder {path!r} in every form tried: {'; '.join(refusals)}")


def name_forms(levels: list[str]) -> list[list[str]]:
    """The forms of a path to try, in order: as it is; without dots (`undotted`); short ASCII (`compact_level`)."""
    forms = [levels, [undotted(level) for level in levels], [compact_level(undotted(level)) for level in levels]]
    unique: list[list[str]] = []
    for form in forms:
        if all(form) and form not in unique:
            unique.append(form)
    return unique


def undotted(level: str) -> str:
    """`level` without ``.``: a dot before a space or at the end goes ("Co. KG" -> "Co KG"), others become ``-``."""
    return re.sub(r"\.(?=\s|$)", "", level).replace(".", "-").strip()


class _NameRefused(Exception):
    """CREATE answered NO for this name (not a race, not a transient condition)."""


def _ensure_levels(client: IMAPClient, prefix: str, delimiter: str | None, levels: list[str]) -> str:
    target = to_server_path("/".join(levels), delimiter)
    parts = target.split(delimiter) if delimiter else [target]
    if prefix and not (target + (delimiter or "")).startswith(prefix):
        names = [prefix + (delimiter or "").join(parts[:i + 1]) for i in range(len(parts))]
    else:
        names = [(delimiter or "").join(parts[:i + 1]) for i in range(len(parts))]
    for name in names:
        if _exists(client, name):
            continue
        try:
            client.create_folder(name)
        except IMAPClientAbortError:
            raise
        except IMAPClientError as exc:
            if _exists(client, name):  # just a race with another client creating it
                continue
            if any(f"[{code}" in str(exc).upper() for code in TRANSIENT_CODES):
                raise
            raise _NameRefused(f"{name!r}: {exc}") from exc
        else:
            log.info("created folder", extra={"fields": {"folder": name}})
        client.subscribe_folder(name)
    return names[-1]


def _exists(client: IMAPClient, name: str) -> bool:
    try:
        return folder_exists(client, name)
    except IMAPClientAbortError:
        raise
    except IMAPClientError:  # a LIST refused for this name (say, too long): the CREATE will tell
        return False


def move(client: IMAPClient, uids: Iterable[int], target: str, use_move: bool | None = None) -> None:
    """Move `uids` of the selected folder to the server folder `target`.

    UID MOVE (RFC 6851) when the server has it, unless `use_move` is False; otherwise UID COPY, then
    \\Deleted on exactly those UIDs and UID EXPUNGE of them (UIDPLUS). Without UIDPLUS a plain EXPUNGE
    follows, which also removes any other message already marked \\Deleted in the folder.
    """
    uid_list = _uids(client, uids)
    if not uid_list:
        return
    if use_move is None:
        use_move = client.has_capability("MOVE")
    if use_move:
        client.move(uid_list, target)
        return
    client.copy(uid_list, target)
    client.add_flags(uid_list, [DELETED], silent=True)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uid_list)
    else:
        client.expunge()


def copy(client: IMAPClient, uids: Iterable[int], target: str) -> None:
    """UID COPY `uids` of the selected folder to the server folder `target` (flags and keywords go along)."""
    uid_list = _uids(client, uids)
    if uid_list:
        client.copy(uid_list, target)


def add_keywords(client: IMAPClient, uids: Iterable[int], keywords: Iterable[str]) -> list[str]:
    """Set `keywords` (sanitised by `sanitize_keyword`) on `uids`; return the flags actually set."""
    flags: list[str] = []
    for keyword in keywords:
        flag = sanitize_keyword(keyword)
        if flag is not None and flag.lower() not in (f.lower() for f in flags):
            flags.append(flag)
    uid_list = _uids(client, uids)
    if flags and uid_list:
        client.add_flags(uid_list, flags, silent=True)
    return flags


def sanitize_keyword(keyword: str) -> str | None:
    """`keyword` as a valid IMAP flag keyword (an atom), or None when nothing usable is left.

    \\Seen, \\Flagged, \\Answered and \\Draft pass as system flags; other backslash names (\\Deleted,
    \\Recent) are refused. Letters lose their accents ("Müller" -> "Muller"), every other character
    outside the atom set becomes ``_``; at most `MAX_KEYWORD_CHARS` characters.
    """
    text = keyword.strip()
    if text.startswith("\\"):
        return SETTABLE_SYSTEM_FLAGS.get(text.lower())
    text = ascii_fold(text)
    text = re.sub(r"\s+", "_", text)
    text = _NOT_ATOM_CHAR.sub("_", text)[:MAX_KEYWORD_CHARS].strip("_")
    return text or None


def _uids(client: IMAPClient, uids: Iterable[int]) -> list[int]:
    if not client.use_uid:
        raise ValueError("filing needs an IMAPClient with use_uid=True")
    return sorted({int(uid) for uid in uids})
