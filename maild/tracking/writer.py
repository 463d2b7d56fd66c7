"""The tracking writer process: groups of hits in over a pipe, written (maild/tracking/events.py), answers out.

The HTTP endpoint's process then only verifies, answers and queues: classifying hits, counting repeats and the
database's work run in this process, on the other core, instead of competing with the endpoint for the GIL.
Started on first use (`python -m maild.tracking.writer`, from the recorder's thread, in a session of its own so a
Ctrl-C does not reach it), it ignores SIGINT and SIGTERM (the daemon stops it: a stop writes every queued hit
first), says it is ready only after that, before it is sent any hit, and dies with the daemon (PDEATHSIG).
The database URL and settings reach it through the pipe, never its command line.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any

from maild.config import TrackingConfig
from maild.tracking.events import Hit

log = logging.getLogger("maild.tracking")

STOP_TIMEOUT = 60.0
START_TIMEOUT = 60.0


class WriterGone(Exception):
    """The writer process ended. `sent`: the group had reached it (it may have been written or not)."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class WriterProcess:
    """The parent's side; call it from one thread (the recorder's), which must outlive the process."""

    def __init__(self, database_url: str, cfg: TrackingConfig) -> None:
        self.database_url = database_url
        self.cfg = cfg
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: Connection | None = None
        self._in: Connection | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def write(self, group: list[Hit]) -> list[bool]:
        """The group written by the process: per hit, whether a mail has its token. WriterGone if it ended."""
        if self._proc is None or self._proc.poll() is not None:
            try:
                self._start()
            except OSError as exc:
                self._discard()
                raise WriterGone(f"the tracking writer process could not start: {exc}", sent=False) from None
        assert self._out is not None and self._in is not None
        try:
            self._out.send(group)
        except OSError as exc:
            self._discard()
            raise WriterGone(f"the tracking writer process ended: {exc}", sent=False) from None
        try:
            status, value = self._in.recv()
        except (EOFError, OSError) as exc:
            self._discard()
            raise WriterGone(f"the tracking writer process ended while writing: {exc!r}", sent=True) from None
        if status != "ok":
            raise RuntimeError(f"the tracking writer could not write {len(group)} hits: {value}")
        return list(value)

    def close(self) -> None:
        """Stop the process once it has written what it was sent (it is sent nothing more)."""
        if self._proc is None:
            return
        try:
            assert self._out is not None
            self._out.send(None)
            self._proc.wait(STOP_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired):
            log.warning("the tracking writer process did not stop; killing it")
            self._proc.kill()
            self._proc.wait()
        self._discard()

    def _start(self) -> None:
        self._discard()
        to_child, child_in = os.pipe()[::-1]
        child_out, from_child = os.pipe()[::-1]
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "maild.tracking.writer", str(child_in), str(child_out), str(os.getpid())],
                pass_fds=(child_in, child_out), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                start_new_session=True)
        finally:
            os.close(child_in)
            os.close(child_out)
        self._out = Connection(to_child, readable=False)
        self._in = Connection(from_child, writable=False)
        try:
            self._out.send((self.database_url, self.cfg.model_dump()))
            if not self._in.poll(START_TIMEOUT) or self._in.recv() != "ready":
                raise OSError(f"it did not get ready within {START_TIMEOUT:g} s")
        except EOFError:
            raise OSError("it ended while starting") from None

    def _discard(self) -> None:
        for conn in (self._out, self._in):
            if conn is not None:
                conn.close()
        self._out = self._in = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        if self._proc is not None:
            self._proc.wait()
        self._proc = None


def _serve(inbox: Connection, outbox: Connection) -> None:
    from maild.store.db import Database
    from maild.tracking.events import EventWriter

    database_url, settings = inbox.recv()
    db = Database(database_url)
    writer = EventWriter(db, TrackingConfig(**settings))
    outbox.send("ready")
    try:
        while True:
            try:
                group: Any = inbox.recv()
            except EOFError:
                return  # the daemon is gone (and with it anything it had not sent)
            if group is None:
                return
            try:
                outbox.send(("ok", writer.write(group)))
            except Exception as exc:
                log.exception("writing %d tracking hits failed", len(group))
                outbox.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        db.dispose()


def main(argv: list[str]) -> None:
    from maild.children import die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides what a Ctrl-C means
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a service manager's stop reaches all: the daemon sends the rest
    fd_in, fd_out, parent = (int(arg) for arg in argv)
    die_with_parent()
    if os.getppid() != parent:
        return  # the daemon died before the signal was armed
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="maild tracking writer: %(levelname)s %(name)s %(message)s")
    _serve(Connection(fd_in, writable=False), Connection(fd_out, readable=False))


if __name__ == "__main__":
    main(sys.argv[1:])
