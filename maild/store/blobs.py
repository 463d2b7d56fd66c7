"""Content-addressed blob store: each distinct byte string is one file named by its sha256.

Writes are atomic (temp file + rename) and idempotent, so any process may write any blob at any
time; a crash leaves at worst an unreferenced blob, never a row pointing at a missing one. Folders are 0700 and
files 0600: the store holds every mail.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from maild.permissions import private_dir


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


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes) -> str:
        """Store `data`; its sha256. Any OSError (ENOSPC, EROFS, EACCES, EIO) is a StorageError."""
        digest = sha256_hex(data)
        target = self.path(digest)
        if not target.exists():
            self._write(target.parent, lambda handle: (handle.write(data), target)[1])
        return digest

    def put_stream(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Store bytes that arrive in pieces (an oversized message), never holding more than one piece; returns
        (sha256, size). Written to a temp file in the store, hashed on the way, then renamed into place."""
        hasher = hashlib.sha256()
        size = 0

        def write(handle: BinaryIO) -> Path:
            nonlocal size
            for chunk in chunks:
                hasher.update(chunk)
                size += len(chunk)
                handle.write(chunk)
            return self.path(hasher.hexdigest())

        self._write(self.root, write)
        return hasher.hexdigest(), size

    def _write(self, directory: Path, write: Callable[[BinaryIO], Path]) -> None:
        """Atomically: `write` fills an owner-only temp file in `directory` and names the blob's path; the file is
        renamed there (or dropped when the blob exists already), removed on any failure; OSError -> StorageError."""
        try:
            private_dir(directory)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")  # 0600
        except OSError as exc:
            raise storage_error(self.root, exc) from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                target = write(handle)
            if target.parent != directory:  # a stream learns its name at the end (put checked beforehand)
                if target.exists():
                    Path(tmp).unlink()
                    return
                private_dir(target.parent)
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise storage_error(self.root, exc) from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
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
        return self.path(digest).exists()

    @staticmethod
    def flush() -> None:
        """Push written blobs to disk before the rows that name them commit (one sync per batch)."""
        os.sync()
