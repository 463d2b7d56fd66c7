"""The messages of a Maildir by location key: the unique name, or name + content digest when two files share it.

A file's unique name (the part before `:`) survives a move from new/ to cur/ and a flag change, so it is the
location key. When new/ and cur/ both hold a file with one unique name (a copy that was never deleted, a
broken delivery agent) and their contents differ, each is a message of its own: its key is then
`NAME;sha256=<16 hex digits of its content>`, the same on every pass. Identical files are one message.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

INFO_SEPARATOR = ":"  # as mailbox.Maildir: `1700000000.M1P2.host:2,S`
SUBDIRS = ("new", "cur")


class MaildirFiles:
    """keys() and get_bytes(key), like mailbox.Maildir, with the key rule above. Lists the folder once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._files: dict[str, Path] = {}
        named: dict[str, list[Path]] = {}
        for sub in SUBDIRS:
            for entry in os.scandir(path / sub):
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                named.setdefault(entry.name.split(INFO_SEPARATOR)[0], []).append(Path(entry.path))
        for name, files in named.items():
            if len(files) == 1:
                self._files[name] = files[0]
            else:
                self._files.update(_distinct(name, files))

    def keys(self) -> list[str]:
        return list(self._files)

    def path_of(self, key: str) -> Path:
        """The file behind `key`; KeyError for a key this listing does not have."""
        return self._files[key]

    def get_bytes(self, key: str) -> bytes:
        """The file's bytes; FileNotFoundError when it went away since the listing."""
        return self._files[key].read_bytes()


def _distinct(name: str, files: list[Path]) -> dict[str, Path]:
    """Several files with one unique name: one key per distinct content (the plain name if they are all equal)."""
    by_digest: dict[str, Path] = {}
    for file in sorted(files):
        try:
            with file.open("rb") as handle:  # in pieces: the file may be huge
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError:  # moved or deleted since the listing, or unreadable now: the next pass sees it again
            continue
        by_digest.setdefault(digest, file)
    if len(by_digest) == 1:
        return {name: next(iter(by_digest.values()))}
    return {f"{name};sha256={digest[:16]}": file for digest, file in by_digest.items()}
