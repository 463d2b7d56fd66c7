"""IMAP folder worker: UID-incremental fetch under UIDVALIDITY, IDLE where offered, polling otherwise.

Messages are fetched with BODY.PEEK[] on a read-only SELECT (nothing is marked \\Seen unless
`ingest.mark_seen`), in batches bounded by count and bytes, and parsed in the worker pool while
the next batch is on the wire. A UIDVALIDITY change restarts the folder from UID 1; the content
digest turns every already-known message into a new location of the stored one, never a re-import.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator

from imapclient import IMAPClient

from maild.config import FilingConfig, ImapSourceConfig
from maild.health import WorkerHealth
from maild.imap.connection import announced_new_mail, connect, quietly_logout
from maild.imap.fetch import fetch_bodies, fetch_sizes
from maild.imap.idle import wait_in_idle
from maild.imap.limits import worker_name
from maild.ingest.context import IngestContext
from maild.ingest.pipeline import Batch, KnownBatch
from maild.ingest.sources.base import FolderWorker
from maild.ingest.store import Fetched
from maild.store import checkpoints
from maild.store.checkpoints import FolderRef

log = logging.getLogger("maild.ingest")

SIZE_CHUNK = 2000  # UIDs per RFC822.SIZE request
OVERSIZED_CHUNK = 1024 * 1024  # bytes per FETCH BODY.PEEK[]<offset.length> of a message over max_message_bytes
PIPELINE_DEPTH = 2  # batches handed to the parsers ahead of the one being committed


class ImapFolderWorker(FolderWorker):
    """One IMAP folder: its pass (`sync`, over any logged-in client) and, unless `polled`, its own IDLE connection.

    A polled folder (beyond the account's `max_connections`) never runs its own loop: the account's
    SharedImapPoller (imap_shared.py) calls `sync` with the shared connection."""

    files_while_waiting = True  # carries out filing planned for its folder (its pass runs the tasks)

    def __init__(self, ctx: IngestContext, ref: FolderRef, cfg: ImapSourceConfig, filing: FilingConfig, *,
                 polled: bool = False) -> None:
        super().__init__(ctx, ref)
        self.polled = polled
        if polled:
            self.health = WorkerHealth(worker_name(self.label, polled=True))
        self.cfg = cfg
        self.filing = filing
        self.client: IMAPClient | None = None

    def open(self) -> None:
        self.client = connect(self.cfg, self.ctx.base_dir)
        self.match()  # anything a crash or an error left undecided (a scan: once per connection, not per sync)

    def close(self) -> None:
        if self.client is not None:
            quietly_logout(self.client)
            self.client = None

    def sync_once(self) -> int:
        return self.sync(self._client())

    def sync(self, client: IMAPClient) -> int:
        """One pass over this folder through `client` (its own connection, or its account's shared one): refiles,
        SELECT, UIDVALIDITY check, new UIDs in batches (oversized ones streamed), filing after each commit."""
        settings = self.ctx.settings
        # Read-write when maild may file here: by the filing config, or by a rule's `move` (filing `none`).
        files = self.ctx.matching is not None
        if files:  # refiles: after a triage assignment, or a rule's second move of a message
            from maild.filing.refile import run_refiles

            run_refiles(self.ctx.db, client, self.ref, self.filing.max_attempts)
        info = client.select_folder(self.ref.folder, readonly=not (settings.mark_seen or files))
        announced_new_mail(client)  # forget the SELECT's own EXISTS: only later ones tell of new mail
        uidvalidity = int(info[b"UIDVALIDITY"])
        uidnext = int(info[b"UIDNEXT"]) if b"UIDNEXT" in info else None
        last_uid = self._checkpoint_for(uidvalidity)
        self._file(client, uidvalidity)
        uids = sorted(uid for uid in client.search(["UID", f"{last_uid + 1}:*"]) if uid > last_uid)
        done = 0
        self.report_progress(done, len(uids))
        # Batches in flight: parsers work on the next ones while this thread fetches and commits.
        in_flight: deque[tuple[Batch, int]] = deque()
        for batch, too_big in self._batches(client, uids):
            if too_big:  # streamed and committed in UID order: the checkpoint never passes an uncommitted UID
                while in_flight:
                    done += self._commit(client, *in_flight.popleft())
                done += self._commit(client, self._keep_oversized(client, batch[0], uidvalidity), batch[0])
            else:
                fetched = fetch_bodies(client, batch)
                items = [Fetched(raw=fetched[uid] or b"", uid=uid, uidvalidity=uidvalidity)
                         for uid in batch if uid in fetched]
                in_flight.append((self.start(items), batch[-1]))
                if len(in_flight) > PIPELINE_DEPTH:
                    done += self._commit(client, *in_flight.popleft())
            if self.ctx.stop.is_set():
                break
        while in_flight:
            done += self._commit(client, *in_flight.popleft())
        checkpoints.record_success(self.ctx.db, self.ref, server_uidnext=uidnext,
                                   server_messages=int(info.get(b"EXISTS", 0)))
        return done

    def _keep_oversized(self, client: IMAPClient, uid: int, uidvalidity: int) -> Batch:
        """A message over max_message_bytes (by RFC822.SIZE): fetched in pieces straight into the blob store."""
        item = Fetched(raw=b"", uid=uid, uidvalidity=uidvalidity)
        first = self._piece(client, uid, 0)
        if first is None:  # expunged since the search
            return KnownBatch([], [])
        log.info("oversized message: streaming it to the blob store", extra={"fields": {
            "worker": self.label, "uid": uid}})
        return self.ctx.pipeline.keep_oversized(item, self._pieces(client, uid, first))

    def _pieces(self, client: IMAPClient, uid: int, first: bytes) -> Iterator[bytes]:
        piece: bytes | None = first
        offset = 0
        while piece:
            yield piece
            offset += len(piece)
            if len(piece) < OVERSIZED_CHUNK:
                return
            piece = self._piece(client, uid, offset)
            if piece is None:
                raise LookupError(f"UID {uid} vanished while it was being fetched")

    def _piece(self, client: IMAPClient, uid: int, offset: int) -> bytes | None:
        """Bytes offset..offset+OVERSIZED_CHUNK of the message (b"" past its end); None if the UID is gone."""
        response = client.fetch([uid], [f"BODY.PEEK[]<{offset}.{OVERSIZED_CHUNK}>"]).get(uid)
        if response is None:
            return None
        return next((bytes(value or b"") for key, value in response.items()
                     if isinstance(key, bytes) and key.startswith(b"BODY[]")), b"")

    def _commit(self, client: IMAPClient, batch: Batch, last_uid: int) -> int:
        self.commit(batch, last_uid)
        if self.ctx.settings.mark_seen and batch.items:
            client.add_flags([item.uid for item in batch.items], [b"\\Seen"], silent=True)
        if batch.items:
            self._file(client, batch.items[0].uidvalidity)
        self.report_progress(len(batch.items), 0)
        return len(batch.items)

    def _file(self, client: IMAPClient, uidvalidity: int) -> None:
        """Carry out pending filing tasks of this folder (moves, copies, keywords) over this connection: planned
        by the filing config, or by rules (which may move mail even when the config's action is `none`)."""
        if self.ctx.matching is None:
            return
        from maild.filing.runner import run_pending

        run_pending(self.ctx.db, client, self.ref, uidvalidity, self.filing.max_attempts)

    def _checkpoint_for(self, uidvalidity: int) -> int:
        state = checkpoints.read_checkpoint(self.ctx.db, self.ref)
        if state.uidvalidity == uidvalidity:
            return state.last_uid
        if state.uidvalidity is not None:
            log.warning("UIDVALIDITY changed; resyncing the folder (known mail is linked, not re-imported)",
                        extra={"fields": {"worker": self.label, "old": state.uidvalidity, "new": uidvalidity}})
        with self.ctx.db.engine.begin() as conn:
            checkpoints.renew_lease(conn, self.ref, self.ctx.owner, self.ctx.settings.lock_ttl,
                                    uidvalidity=uidvalidity, last_uid=0)
        return 0

    def _batches(self, client: IMAPClient, uids: list[int]) -> Iterator[tuple[list[int], bool]]:
        """Group UIDs so that one batch stays under both the count and the byte limit; a message over
        max_message_bytes is a batch of its own, marked True (it is streamed, not fetched whole)."""
        settings = self.ctx.settings
        for start in range(0, len(uids), SIZE_CHUNK):
            chunk = uids[start:start + SIZE_CHUNK]
            sizes = fetch_sizes(client, chunk)
            batch: list[int] = []
            batch_bytes = 0
            for uid in chunk:
                size = sizes.get(uid, 0)
                if size > settings.max_message_bytes:
                    if batch:
                        yield batch, False
                        batch, batch_bytes = [], 0
                    yield [uid], True
                    continue
                if batch and (len(batch) >= settings.batch_messages or batch_bytes + size > settings.batch_bytes):
                    yield batch, False
                    batch, batch_bytes = [], 0
                batch.append(uid)
                batch_bytes += size
            if batch:
                yield batch, False

    def wait_for_change(self) -> None:
        client = self._client()
        idle = b"IDLE" in client.capabilities()
        if announced_new_mail(client):  # mail came while the pass ran (told once, before the IDLE): look now
            return
        if idle:
            self._idle(client)
        else:
            self.sleep_renewing(self.ctx.settings.poll_interval)
            client.noop()

    def _idle(self, client: IMAPClient) -> None:
        """IDLE until the server reports a change, the daemon stops, this worker is woken (filing planned for the
        folder, its lease lost), `idle_renew` passes, or it is time to look at the folder anyway
        (`idle_check_interval`: a server may change UIDVALIDITY without ending the IDLE session; the next pass
        SELECTs the folder and compares it). The thread sleeps in one poll() meanwhile (maild/imap/idle.py)."""
        settings = self.ctx.settings
        ends = time.monotonic() + min(settings.idle_renew, settings.idle_check_interval)
        client.idle()
        closed = False
        try:
            while not self.interrupted():
                remaining = ends - time.monotonic()
                if remaining <= 0 or wait_in_idle(client, self.wakeups(), self.waiting(remaining)):
                    break
        except ConnectionError:
            closed = True  # nothing to say DONE to
            raise
        finally:
            self.back_from_waiting()
            if not closed:
                client.idle_done()

    def _client(self) -> IMAPClient:
        if self.client is None:
            raise ConnectionError("not connected")
        return self.client
