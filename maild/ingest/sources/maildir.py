"""Maildir folder worker: mail delivered locally into `new/` and `cur/`, found by polling.

A Maildir message's unique name (the part before `:2,`) survives a move from new/ to cur/ and a
flag change, so it is the location key (maildir_files.py: two different files with one name are two
messages). The folder is never modified.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select

from maild.config import MaildirSourceConfig, resolve_path
from maild.ingest.context import IngestContext
from maild.ingest.sources.base import FolderWorker
from maild.ingest.sources.maildir_files import MaildirFiles
from maild.ingest.store import Fetched
from maild.store import checkpoints
from maild.store.checkpoints import FolderRef
from maild.store.models import Location

_loc = Location.__table__
log = logging.getLogger("maild.ingest")

PIECE = 1024 * 1024  # bytes read at a time from a file over max_message_bytes
MAILDIR_FOLDER = ""  # a Maildir source is one folder; its location rows carry no folder name


class MaildirFolderWorker(FolderWorker):
    def __init__(self, ctx: IngestContext, ref: FolderRef, cfg: MaildirSourceConfig) -> None:
        super().__init__(ctx, ref)
        self.path: Path = resolve_path(ctx.base_dir, cfg.path)
        self.poll_interval = cfg.poll_interval
        self._known: set[str] | None = None

    def open(self) -> None:
        missing = [sub for sub in ("new", "cur") if not (self.path / sub).is_dir()]
        if missing:
            raise FileNotFoundError(f"{self.path} is not a Maildir (missing {', '.join(missing)}/)")
        self.match()  # anything a crash or an error left undecided

    def sync_once(self) -> int:
        box = MaildirFiles(self.path)
        keys = box.keys()
        known = self._known_keys()
        waiting = sorted(key for key in keys if key not in known)
        self.report_progress(0, len(waiting))
        settings = self.ctx.settings
        done = 0
        batch: list[Fetched] = []
        batch_bytes = 0
        for key in waiting:
            try:
                if box.path_of(key).stat().st_size > settings.max_message_bytes:
                    done += self._keep_oversized(key, box.path_of(key))  # its own batch, streamed
                    continue
                raw = box.get_bytes(key)
            except (KeyError, FileNotFoundError):  # removed by its owner since we listed it
                continue
            except OSError as exc:  # unreadable now (permissions, I/O): not recorded, so tried again next pass
                log.warning("cannot read a Maildir file; will retry", extra={"fields": {
                    "worker": self.label, "key": key, "error": str(exc)}})
                continue
            batch.append(Fetched(raw=raw, key=key))
            batch_bytes += len(raw)
            if len(batch) >= settings.batch_messages or batch_bytes >= settings.batch_bytes:
                done += self._commit(batch)
                batch, batch_bytes = [], 0
                if self.ctx.stop.is_set():
                    break
        if batch:
            done += self._commit(batch)
        checkpoints.record_success(self.ctx.db, self.ref, server_messages=len(keys))
        return done

    def _commit(self, batch: list[Fetched]) -> int:
        self.commit(self.start(batch))
        assert self._known is not None
        self._known.update(item.key for item in batch)
        self.report_progress(len(batch), 0)
        return len(batch)

    def _keep_oversized(self, key: str, path: Path) -> int:
        """A file over max_message_bytes: copied in pieces into the blob store and quarantined, never read whole.
        A file removed meanwhile raises FileNotFoundError (skipped like any file that went away)."""
        with path.open("rb") as handle:
            kept = self.ctx.pipeline.keep_oversized(Fetched(raw=b"", key=key), iter(lambda: handle.read(PIECE), b""))
        self.commit(kept)
        assert self._known is not None
        self._known.add(key)
        self.report_progress(1, 0)
        return 1

    def _known_keys(self) -> set[str]:
        if self._known is None:
            with self.ctx.db.engine.connect() as conn:
                rows = conn.execute(select(_loc.c.key).where(
                    _loc.c.source_id == self.ref.source_id, _loc.c.folder == self.ref.folder))
                self._known = {row[0] for row in rows}
        return self._known

    def wait_for_change(self) -> None:
        self.sleep_renewing(self.poll_interval)

    def close(self) -> None:
        self._known = None  # another daemon may have ingested while we did not hold the lease
