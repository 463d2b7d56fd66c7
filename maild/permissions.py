"""Owner-only permissions: maild's mail, database and secrets are created readable by its user alone, and
`maild config check` names the ones that are open to others."""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maild.config import Config

OWNER_ONLY_UMASK = 0o077  # set by the `maild` command at start: whatever it creates is 0700 / 0600
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def restrict_new_files() -> None:
    """Everything this process creates from now on is owner-only (the umask is per process, inherited)."""
    os.umask(OWNER_ONLY_UMASK)


def private_dir(path: Path) -> Path:
    """`mkdir -p path`, each folder it creates 0700 (unlike mkdir -p, also the intermediate ones); folders that
    already exist keep their permissions."""
    missing = []
    folder = Path(path)
    while not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=PRIVATE_DIR)
    return Path(path)


def private_file(path: Path) -> Path:
    """Create `path` empty and 0600 unless it exists (then it is left as it is)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    return Path(path)


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path`, a file that is 0600 from its creation on (an existing file keeps its mode)."""
    private_file(path)
    path.write_bytes(data)


@dataclass(frozen=True)
class Exposure:
    """A path of maild's that group or others may read, write or enter."""

    what: str
    path: Path
    mode: int

    def __str__(self) -> str:
        wanted = PRIVATE_DIR if stat.S_ISDIR(self.mode) else PRIVATE_FILE
        return (f"{self.what} {self.path} is {stat.S_IMODE(self.mode):04o}, open to {_who(self.mode)} "
                f"(fix: chmod {wanted:o} {self.path})")


def sensitive_paths(config: Config) -> list[tuple[str, Path]]:
    """What holds mail or secrets, by what it is: the SQLite database (+ -wal, -shm), the blob store, the
    Maildirs, the file transport's sent mail, the tracking secret and the password files."""
    from maild.config import ImapSourceConfig, MaildirSourceConfig, resolve_path

    base = config.base_dir
    paths: list[tuple[str, Path]] = []
    database = sqlite_path(config.database_url)
    if database is not None:
        paths += [("database", database), ("database WAL", Path(f"{database}-wal")),
                  ("database shared memory", Path(f"{database}-shm"))]
    paths.append(("blob store", config.blob_dir))
    for source in config.sources:
        if isinstance(source, MaildirSourceConfig):
            paths.append((f"maildir {source.name}", resolve_path(base, source.path)))
        elif isinstance(source, ImapSourceConfig) and source.password_file:
            paths.append((f"source {source.name} password_file", resolve_path(base, source.password_file)))
    transport = config.outbound.transport
    if transport.type == "file":
        paths.append(("sent mail (file transport)", resolve_path(base, transport.directory)))
    elif transport.password_file:
        paths.append(("outbound.transport password_file", resolve_path(base, transport.password_file)))
    if config.web.secret_file and not config.web.secret_env:
        paths.append(("web secret", resolve_path(base, config.web.secret_file)))
    if config.tracking.secret_file:
        paths.append(("tracking secret", resolve_path(base, config.tracking.secret_file)))
    return paths


def exposures(config: Config) -> tuple[list[str], list[Exposure]]:
    """(what was checked and exists, what of it is open to group or others)."""
    checked, found = [], []
    for what, path in sensitive_paths(config):
        try:
            mode = path.stat().st_mode
        except OSError:
            continue  # not there (yet): created owner-only when it is
        checked.append(what)
        if stat.S_IMODE(mode) & 0o077:
            found.append(Exposure(what, path, mode))
    return checked, found


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for other databases and for in-memory SQLite."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _who(mode: int) -> str:
    group, others = mode & 0o070, mode & 0o007
    return "group and others" if group and others else "group" if group else "others"
