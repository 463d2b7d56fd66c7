"""The daemon: one thread per configured folder, the outbox sender, the rules and the tracking endpoint, under
one supervisor (maild/supervisor.py: restarts, health); a shared pool of parser processes; clean stop.

`Daemon.run()` keeps every worker alive until `stop` is set (SIGTERM/SIGINT in the CLI);
`Daemon.ingest_once()` does a single pass over every folder for `maild ingest --once`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from maild.classify.settings import classify_settings
from maild.clock import utcnow
from maild.config import Config, ImapSourceConfig, MaildirSourceConfig
from maild.filing.watcher import FilingWatcher
from maild.health import HealthBoard
from maild.imap.limits import split_folders
from maild.ingest.authentication import normalise_ids
from maild.ingest.context import IngestContext, new_owner_id
from maild.ingest.leases import LeaseKeeper
from maild.ingest.parser_pool import ParserPool
from maild.ingest.pipeline import Pipeline
from maild.ingest.sources.base import IngestWorker
from maild.ingest.sources.imap import ImapFolderWorker
from maild.ingest.sources.imap_shared import FolderErrors, SharedImapPoller
from maild.ingest.sources.maildir import MAILDIR_FOLDER, MaildirFolderWorker
from maild.matchers.stage import MatchingStage
from maild.memory import freeze_startup_objects, tune_malloc
from maild.server_keeper import ServerKeeper
from maild.store import checkpoints
from maild.store.db import Database
from maild.supervisor import Supervisor
from maild.wakeup import StopFlag

if TYPE_CHECKING:
    from maild.classify.background import BackfillWorker
    from maild.rules.scheduler import RulesRunner
    from maild.tracking.listener import TrackingListener
    from maild.tracking.server import TrackingServer

log = logging.getLogger("maild.daemon")


@dataclass
class PassReport:
    handled: int
    errors: dict[str, str]


class Daemon:
    def __init__(self, config: Config, db: Database | None = None, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self.clock = clock  # the rules' time (tests move it; ingestion and sending keep real time)
        self.db = db or Database(config.database_url)
        self.stop = StopFlag()  # also wakes every worker waiting in a poll() (an IDLE) at once
        self._pool: ParserPool | None = None
        self.rules: RulesRunner | None = None
        self._workers: list[IngestWorker] | None = None
        self.tracking: TrackingListener | None = None
        self.backfill: BackfillWorker | None = None  # classifies mail stored before classification existed
        self.board = HealthBoard()  # every worker's state: /health reads it, the supervisor writes it for status

    def start_pool(self) -> Pipeline:
        tune_malloc()  # before the worker threads: mails are large byte strings (maild/memory.py)
        settings = self.config.ingest
        self._pool = ParserPool(settings.parse_workers, str(self.config.blob_dir), settings.max_message_bytes,
                                normalise_ids(self.config.matching.trusted_authserv_ids),
                                classify_settings(self.config))
        return Pipeline(self.db, self._pool)

    def workers(self, ctx: IngestContext) -> list[IngestWorker]:
        workers: list[IngestWorker] = []
        for source in self.config.sources:
            if isinstance(source, ImapSourceConfig):
                workers += self._imap_workers(ctx, source)
            elif isinstance(source, MaildirSourceConfig):
                source_id = checkpoints.ensure_source(self.db, source.name, "maildir", source.path)
                ref = checkpoints.ensure_folder(self.db, source_id, source.name, MAILDIR_FOLDER)
                workers.append(MaildirFolderWorker(ctx, ref, source))
        return workers

    def _imap_workers(self, ctx: IngestContext, source: ImapSourceConfig) -> list[IngestWorker]:
        """A worker with its own IDLE connection per folder while they fit under the account's `max_connections`;
        the folders beyond it polled in turn over one shared connection (maild/imap/limits.py)."""
        address = f"{source.username}@{source.host}:{source.effective_port}"
        source_id = checkpoints.ensure_source(self.db, source.name, "imap", address)
        filing = source.filing or self.config.filing
        own, polled = split_folders(source.folders, source.max_connections)

        def folder_worker(folder: str, polled: bool) -> ImapFolderWorker:
            ref = checkpoints.ensure_folder(self.db, source_id, source.name, folder)
            return ImapFolderWorker(ctx, ref, source, filing, polled=polled)

        workers: list[IngestWorker] = [folder_worker(folder, False) for folder in own]
        if polled:
            log.info("more folders than max_connections: these are polled over one shared connection",
                     extra={"fields": {"source": source.name, "max_connections": source.max_connections,
                                       "idle": ",".join(own) or "-", "polled": ",".join(polled),
                                       "poll_interval": f"{self.config.ingest.poll_interval:g}s"}})
            workers.append(SharedImapPoller(ctx, source, [folder_worker(folder, True) for folder in polled]))
        return workers

    def context(self, pipeline: Pipeline) -> IngestContext:
        return IngestContext(db=self.db, pipeline=pipeline, settings=self.config.ingest,
                             base_dir=self.config.base_dir, stop=self.stop,
                             matching=MatchingStage(self.config, self.db))

    def run(self) -> None:
        """Supervise every folder until `self.stop` is set; then finish the batch in hand and return.

        Invalid rules (RuleErrors) and a tracking port that cannot be listened on (PortUnavailable) stop the
        start before anything runs.
        """
        self.db.upgrade()
        owner = new_owner_id()
        self._start_rules(owner)
        tracking: TrackingListener | None = None
        web: TrackingServer | None = None
        try:
            pipeline = self.start_pool()  # forks its processes before the tracking threads start
            tracking = self.tracking = self._start_tracking()
            web = self._start_web()
            ctx = self.context(pipeline)
            ctx.owner = owner
            workers = self._workers = self.workers(ctx)
            if not workers:
                log.warning("no sources configured; nothing to ingest (add sources: to the config)")
            supervisor = Supervisor(self.db, owner, self.stop, self.board)
            self._start_waiting_duties(supervisor, ctx)
            for worker in workers:
                supervisor.start(worker.health, worker.run)
                if isinstance(worker, SharedImapPoller):  # its folders' own states, on /health and in status
                    for folder in worker.folders:
                        self.board.add(folder.health)
            self._start_outbox(supervisor, owner)
            self._start_backfill(supervisor, owner)
            if self.rules is not None:
                self.board.add(self.rules.health)
            if tracking is not None:
                self.board.add(tracking.health)
                supervisor.watch(tracking.check)
            if web is not None:
                keeper = ServerKeeper("web", web)
                self.board.add(keeper.health)
                supervisor.watch(keeper.check)
            supervisor.start_heartbeat()
            log.info("maild running", extra={"fields": {"folders": len(workers), "owner": ctx.owner}})
            self.stop.wait()
            log.info("stopping: finishing the batch in hand")
            if tracking is not None:
                tracking.stop()
                tracking = None
            if web is not None:
                web.stop()
                web = None
            if self.rules is not None:
                self.rules.stop()
                self.rules = None
            supervisor.join(timeout=30)
            supervisor.forget()
        finally:
            if tracking is not None:
                tracking.stop()
            if web is not None:
                web.stop()
            self.shutdown()
        log.info("stopped")

    def _start_waiting_duties(self, supervisor: Supervisor, ctx: IngestContext) -> None:
        """What folder workers that wait would each do on a timer, done once for all of them: the lease keeper
        (their leases renewed in one statement) and the filing watcher (one query, then only the workers of
        folders with filing planned are woken)."""
        leases = ctx.leases = LeaseKeeper(self.db, ctx.owner, self.config.ingest.lock_ttl)
        supervisor.start(leases.health, lambda: leases.run(self.stop))
        if ctx.matching is not None:
            watcher = ctx.filing_watch = FilingWatcher(self.db)
            supervisor.start(watcher.health, lambda: watcher.run(self.stop))

    def _start_rules(self, owner: str) -> None:
        """Read and check the rules before anything else starts (invalid rules: RuleErrors), then compete for
        the scheduler lease."""
        from maild.rules.scheduler import RulesRunner

        if not self.config.rules.enabled:
            return
        runner = RulesRunner(self.config, self.db, owner, clock=self.clock)
        runner.start(ready=self._caught_up)
        self.rules = runner

    def _caught_up(self) -> bool:
        """Every folder had its first pass: mail that came while maild was down is in before the rules run
        (a reply that arrived meanwhile must pause a reminder, not follow it)."""
        workers = self._workers
        return workers is not None and all(w.first_pass.is_set() for w in workers)

    def reload_rules(self) -> bool:
        """SIGHUP: re-read the rules; an invalid set is reported and the last good one stays."""
        return self.rules.reload() if self.rules is not None else False

    def _start_outbox(self, supervisor: Supervisor, owner: str) -> None:
        """The outbox sender: its own asyncio loop in a supervised thread, stopped by the same flag."""
        from maild.outbound.sender import build_sender

        sender = build_sender(self.config, self.db, owner)
        supervisor.start(sender.health, lambda: asyncio.run(sender.run(self.stop)))

    def _start_backfill(self, supervisor: Supervisor, owner: str) -> None:
        """Mail stored before classification existed is classified in the background (maild/classify/background.py)."""
        from maild.classify.background import BackfillWorker
        from maild.store.blobs import BlobStore

        settings = classify_settings(self.config)
        machine = self.config.machine_mail
        if settings is None or machine.backfill_batch == 0:
            return
        self.backfill = BackfillWorker(self.db, BlobStore(self.config.blob_dir), settings, owner, self.stop,
                                       batch=machine.backfill_batch, pause=machine.backfill_pause)
        supervisor.start(self.backfill.health, self.backfill.run)

    def _start_tracking(self) -> TrackingListener | None:
        """The open/click endpoint, when tracking is on; a missing secret is reported, not fatal. A port held by
        another process raises PortUnavailable (links in sent mail would reach it); one served by another daemon
        of this installation is stood by for (maild/tracking/listener.py)."""
        from maild.config import ConfigError
        from maild.tracking.app import create_app
        from maild.tracking.listener import TrackingListener
        from maild.tracking.server import TrackingServer
        from maild.tracking.signing import load_secret

        cfg = self.config.tracking
        if not cfg.enabled:
            return None
        try:
            secret = load_secret(cfg, self.config.base_dir)
        except ConfigError as exc:
            log.error("tracking endpoint not started: %s", exc)
            return None
        server = TrackingServer(create_app(self.db, secret, cfg, workers=self.board.views), cfg.listen_host,
                                cfg.listen_port, cfg)
        listener = TrackingListener(server, secret)
        listener.start()
        return listener

    def _start_web(self) -> TrackingServer | None:
        """The web app on web.listen_host:web.listen_port, when web.enabled. Unlike the tracking port (which links in
        sent mail name), a taken web port is logged and the daemon goes on without the web app."""
        from maild.config import ConfigError
        from maild.web.server import WebUnavailable, start_web

        if not self.config.web.enabled:
            return None
        try:
            return start_web(self.config, self.db)
        except (WebUnavailable, ConfigError) as exc:
            log.error("web app not started: %s", exc)
            return None

    def ingest_once(self, progress: Callable[[str, int, int], None] | None = None) -> PassReport:
        """One pass over every folder, folders in parallel; per-folder errors are reported, not raised."""
        pipeline = self.start_pool()  # the parser processes start up meanwhile
        try:
            self.db.upgrade()
            ctx = self.context(pipeline)
            ctx.progress = progress
            workers = self.workers(ctx)
            freeze_startup_objects()
            errors: dict[str, str] = {}
            handled = 0
            with ThreadPoolExecutor(max_workers=max(1, min(8, len(workers)))) as threads:
                futures = {w.label: (w, threads.submit(w.run_once)) for w in workers}
                for label, (worker, future) in futures.items():
                    try:
                        handled += future.result()
                    except FolderErrors as exc:  # a shared connection's folders: each error recorded already
                        handled += exc.handled
                        errors.update(exc.errors)
                    except Exception as exc:
                        errors[label] = f"{type(exc).__name__}: {exc}"
                        worker.record_error(exc, retry_in=0)
            if ctx.matching is not None:
                ctx.matching.run_all()
            return PassReport(handled, errors)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        if self.rules is not None:
            self.rules.stop()
            self.rules = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

