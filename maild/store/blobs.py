"""Content-addressed blob store: each distinct byte string is one file named by its sha256.

Writes are atomic (temp file + rename) and idempotent, so any process may write any blob at any
time; a crash leaves at worst an unreferenced blob, never a row pointing at a missing one. Folders are 0700 and
files 0600: the store holds every mail.

Layout: `root/ab/<digest>` (256 folders, made once; a folder per blob cost a mkdir per message). Blobs an older
maild wrote under `root/ab/cd/<digest>` are found there too, and never written twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from maild.libc import libc
from maild.permissions import PRIVATE_FILE, private_dir


class StorageError(Exception):
    """The blob store could not be written (disk full, read-only, permissions, I/O error): a problem of this
    machine, never of the message being stored. Ingest does not commit the batch and retries it later."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_

    def __reduce__(self) -> tuple[type[StorageError], tuple[str, int | None]]:  # crosses the parser processes
        return (StorageError, (str(self), self.errno))


def storage_error(root: Path, exc: OSError) -> StorageError:
    return StorageError(f"cannot write to the blob store {root}: {exc.strerror or exc}", exc.errno)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_temp_numbers = itertools.count()  # with the pid: temp names no other writer uses (O_EXCL checks anyway)
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        """Where the blob is (or will be written): the older two-level place when it is there."""
        flat = self._path(digest)
        if flat.exists():
            return flat
        legacy = self._legacy_path(digest)
        return legacy if legacy.exists() else flat

    def _path(self, digest: str) -> Path:
        return Path(self._place(digest))

    def _legacy_path(self, digest: str) -> Path:
        return Path(self._legacy_place(digest))

    def _place(self, digest: str) -> str:  # str, not Path: a blob is looked up per message and attachment
        return os.path.join(self.root, digest[:2], digest)

    def _legacy_place(self, digest: str) -> str:
        return os.path.join(self.root, digest[:2], digest[2:4], digest)

    def put(self, data: bytes) -> str:
        """Store `data`; its sha256. Any OSError (ENOSPC, EROFS, EACCES, EIO) is a StorageError."""
        digest = sha256_hex(data)
        if not self.exists(digest):
            target = self._path(digest)
            self._write(target.parent, lambda fd: (_write_all(fd, data), target)[1])
        return digest

    def put_stream(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Store bytes that arrive in pieces (an oversized message), never holding more than one piece; returns
        (sha256, size). Written to a temp file in the store, hashed on the way, then renamed into place."""
        hasher = hashlib.sha256()
        size = 0

        def write(fd: int) -> Path:
            nonlocal size
            for chunk in chunks:
                hasher.update(chunk)
                size += len(chunk)
                _write_all(fd, chunk)
            return self._path(hasher.hexdigest())

        self._write(self.root, write)
        return hasher.hexdigest(), size

    def _write(self, directory: Path, write: Callable[[int], Path]) -> None:
        """Atomically: `write` fills an owner-only temp file in `directory` and names the blob's path; the file is
        renamed there (or dropped when the blob exists already), removed on any failure; OSError -> StorageError."""
        try:
            tmp, fd = _new_temp(directory)
        except OSError as exc:
            raise storage_error(self.root, exc) from exc
        try:
            try:
                target = write(fd)
            finally:
                os.close(fd)
            if target.parent != directory:  # a stream learns its name at the end (put checked beforehand)
                if self.exists(target.name):
                    os.unlink(tmp)
                    return
                private_dir(target.parent)
            os.replace(tmp, target)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise storage_error(self.root, exc) from exc
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def get(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def size(self, digest: str) -> int:
        """The blob's size in bytes, without reading it."""
        return self.path(digest).stat().st_size

    def copy_to(self, digest: str, target: BinaryIO, piece: int = 1024 * 1024) -> None:
        """Write the blob to `target` in pieces of `piece` bytes (never read whole)."""
        with self.path(digest).open("rb") as handle:
            shutil.copyfileobj(handle, target, piece)

    def exists(self, digest: str) -> bool:
        return os.path.exists(self._place(digest)) or os.path.exists(self._legacy_place(digest))

    def flush(self) -> None:
        """Push written blobs to disk before the rows that name them commit (one sync per batch): the blob
        store's file system only (syncfs), not every disk of the machine; sync() where syncfs is missing."""
        try:
            fd = os.open(self.root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except FileNotFoundError:
            return  # nothing was ever written here
        except OSError:
            os.sync()
            return
        try:
            if _syncfs is None or _syncfs(fd) != 0:
                os.sync()
        finally:
            os.close(fd)


def _new_temp(directory: Path) -> tuple[str, int]:
    """An owner-only temp file in `directory` (made, 0700, when missing): (path, open fd)."""
    while True:
        tmp = os.path.join(directory, f".tmp-{os.getpid()}-{next(_temp_numbers)}")
        try:
            return tmp, os.open(tmp, NEW_FILE, PRIVATE_FILE)
        except FileExistsError:
            continue  # left by a dead process that had our pid
        except FileNotFoundError:
            private_dir(directory)
            return tmp, os.open(tmp, NEW_FILE, PRIVATE_FILE)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        return libc().syncfs  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()
