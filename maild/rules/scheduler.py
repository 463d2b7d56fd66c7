"""When rules run: APScheduler 3 with its job store in maild's database, one active scheduler per database.

Every daemon started with rules enabled competes for the `rules-scheduler` lease; the holder runs an
APScheduler `BackgroundScheduler` whose jobs live in the `apscheduler_jobs` table, the others wait and take
over when the holder stops renewing (after `rules.lease_ttl`, at once when it was a dead process on this host).

Jobs:
- `maild:events`: consume new timeline events (every `rules.event_interval` seconds);
- `maild:sweep`: date-offset sweeps (every `rules.sweep_interval` seconds, and at once when a scheduler becomes
  active, so a daemon that was down catches up);
- `rule:NAME`: one per schedule rule (cron or interval, in the rules' time zone).

Deliberate settings: one worker thread (the engine is never run twice at once in a process); `coalesce=True`
(after downtime a schedule runs once, not once per missed occurrence); `misfire_grace_time` =
`rules.misfire_grace` (a run missed by longer than that is skipped: a daily 08:00 report is not sent at
17:00). Schedule rules are keyed by their scheduled time, so a takeover never runs an occurrence twice.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from maild.clock import utcnow
from maild.config import Config
from maild.health import WorkerHealth
from maild.rules.model import RuleErrors, RuleSet, ScheduleTrigger
from maild.store import leases
from maild.store.db import Database

log = logging.getLogger("maild.rules")

LEASE_NAME = "rules-scheduler"
# How long the rules wait at start for the first ingest pass of every folder (a slow IMAP server must not
# hold them up for ever; an unreachable one counts as tried).
CATCH_UP_WAIT = 300.0
EVENTS_JOB = "maild:events"
SWEEP_JOB = "maild:sweep"
# Interval schedules count from a fixed origin, so every daemon computes the same fire times.
INTERVAL_ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday



class _SkipBusyRuns(logging.Filter):
    """APScheduler warns each time a job is due while its previous run still goes on (a long sweep delays
    the event job): expected with one worker thread, so not worth a warning every few seconds."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


logging.getLogger("apscheduler.scheduler").addFilter(_SkipBusyRuns())
# "Running job ... executed successfully" every few seconds says nothing; failures still log as errors.
logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)

class _Scheduler(BackgroundScheduler):
    """APScheduler's background scheduler with a clean stop: its loop, woken by `shutdown()` after the executor
    has been shut down, would otherwise still submit a due job and log "Error submitting job ... cannot schedule
    new futures after shutdown". The stopped state is checked under the job stores' lock, which `shutdown()`
    holds while it stops the executor, so a job is either submitted before the executor stops or not at all."""

    def _process_jobs(self) -> float | None:
        with self._jobstores_lock:
            if self.state == STATE_STOPPED:
                return None
            return super()._process_jobs()  # type: ignore[no-any-return]


class _SharedEngineJobStore(SQLAlchemyJobStore):
    """The job table in the daemon's own database: stopping the scheduler leaves the daemon's engine alone
    (APScheduler's store disposes its engine at shutdown, which is the daemon's to close last)."""

    def shutdown(self) -> None:
        pass


# The runner whose scheduler is active in this process, per database (jobs are stored by reference, with
# only this key as argument: no URL, no secret in the job table).
_ACTIVE: dict[str, RulesRunner] = {}


def run_job(db_key: str, job: str, rule: str | None = None) -> None:
    """The one function every stored job calls."""
    runner = _ACTIVE.get(db_key)
    if runner is None:
        log.warning("rules job %s ran without an active scheduler in this process; skipped", job)
        return
    runner.run(job, rule)


class RulesRunner:
    """Loads the rules, holds the scheduler lease, and runs the engine from the scheduler's jobs."""

    def __init__(self, config: Config, db: Database, owner: str, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self.db = db
        self.owner = owner
        self.clock = clock
        self.db_key = hashlib.sha256(db.url.encode()).hexdigest()[:16]
        self.rules = RuleSet()
        self.engine: Any = None
        self.scheduler: BackgroundScheduler | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ready: Callable[[], bool] | None = None
        self.health = WorkerHealth("rules")

    # --- life cycle ------------------------------------------------------------------------------

    def load(self) -> RuleSet:
        """The rules of the config's rules folder; raises RuleErrors (every problem, file:line:column)."""
        from maild.rules.loader import load_rules

        templates = self.config.base_dir / self.config.outbound.templates_dir
        return load_rules(self.config.rules_dir, timezone=self.config.rules.timezone,
                          templates_dir=templates if templates.is_dir() else None,
                          webhook_secrets=self.config.rules.webhook_secrets)

    def start(self, ready: Callable[[], bool] | None = None) -> None:
        """Load the rules (invalid rules: RuleErrors, the daemon must not start) and begin competing for the
        scheduler, once `ready()` holds (the daemon's first ingest pass) or after CATCH_UP_WAIT seconds."""
        from maild.rules.engine import RulesEngine

        self.rules = self.load()
        self.engine = RulesEngine(self.config, self.db, self.rules, clock=self.clock)
        log.info("rules loaded", extra={"fields": {"rules": len(self.rules.rules), "dir": str(self.config.rules_dir)}})
        self._ready = ready
        self._thread = threading.Thread(target=self._lease_loop, name="rules-lease", daemon=True)
        self._thread.start()

    def reload(self) -> bool:
        """Re-read the rules (SIGHUP); on any error keep the last good set and say why."""
        try:
            rules = self.load()
        except RuleErrors as exc:
            log.error("rules not reloaded, keeping the last good set:\n%s", exc)
            return False
        with self._lock:
            self.rules = rules
            if self.engine is not None:
                self.engine.replace_rules(rules)
            if self.scheduler is not None:
                self._sync_jobs(self.scheduler)
        log.info("rules reloaded", extra={"fields": {"rules": len(rules.rules)}})
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._deactivate()
        leases.release(self.db, LEASE_NAME, self.owner)

    @property
    def active(self) -> bool:
        return self.scheduler is not None

    # --- the lease -------------------------------------------------------------------------------

    def _lease_loop(self) -> None:
        ttl = self.config.rules.lease_ttl
        deadline = time.monotonic() + CATCH_UP_WAIT
        while self._ready is not None and not self._ready() and time.monotonic() < deadline:
            if self._stop.wait(0.2):
                return
        while not self._stop.is_set():
            try:
                self._hold_lease(ttl)
            except Exception as exc:  # database unreachable, or the scheduler would not start: try again soon
                log.error("rules scheduler lease: %s", exc)
                self.health.failed(exc, ttl / 3)
                try:
                    self._deactivate()
                except Exception:
                    log.exception("rules scheduler did not stop cleanly")
            self._stop.wait(ttl / 3)
        self.health.stopped()

    def _hold_lease(self, ttl: float) -> None:
        held = leases.acquire(self.db, LEASE_NAME, self.owner, ttl)
        if held and not self.active:
            self._activate()
            self.health.ok()  # running the rules (again); a job that fails shows at once
        elif not held and self.active:
            log.warning("rules scheduler lease lost; another daemon runs the rules now")
            self._deactivate()
        if not held:
            self.health.ok()  # standing by is healthy; a job's failure shows as soon as one runs here

    def _activate(self) -> None:
        tz = ZoneInfo(self.rules.timezone)
        defaults = {"coalesce": True, "max_instances": 1, "misfire_grace_time": int(self.config.rules.misfire_grace)}
        scheduler = _Scheduler(jobstores={"default": _SharedEngineJobStore(engine=self.db.engine)},
                               executors={"default": ThreadPoolExecutor(1)}, job_defaults=defaults, timezone=tz)
        _ACTIVE[self.db_key] = self
        scheduler.start(paused=True)
        try:
            with self._lock:
                self._sync_jobs(scheduler)
                self.scheduler = scheduler
            scheduler.modify_job(SWEEP_JOB, next_run_time=datetime.now(tz))  # catch up at once
        except BaseException:  # the database went away meanwhile: no half-started scheduler is left running
            with self._lock:
                self.scheduler = None
            if _ACTIVE.get(self.db_key) is self:
                del _ACTIVE[self.db_key]
            scheduler.shutdown(wait=False)
            raise
        scheduler.resume()
        log.info("rules scheduler active", extra={"fields": {"owner": self.owner}})

    def _deactivate(self) -> None:
        with self._lock:
            scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None:
            scheduler.shutdown(wait=True)
        if _ACTIVE.get(self.db_key) is self:
            del _ACTIVE[self.db_key]

    def _sync_jobs(self, scheduler: BackgroundScheduler) -> None:
        """Make the stored jobs exactly the wanted ones; an unchanged job keeps its next run time."""
        cfg = self.config.rules
        wanted: dict[str, tuple[BaseTrigger, list[Any]]] = {
            EVENTS_JOB: (IntervalTrigger(seconds=cfg.event_interval), [self.db_key, "events"]),
            SWEEP_JOB: (IntervalTrigger(seconds=cfg.sweep_interval), [self.db_key, "sweep"]),
        }
        for rule in self.rules.rules:
            if rule.enabled and isinstance(rule.trigger, ScheduleTrigger):
                wanted[f"rule:{rule.name}"] = (schedule_trigger(rule.trigger), [self.db_key, "schedule", rule.name])
        for job in scheduler.get_jobs():
            if job.id not in wanted:
                scheduler.remove_job(job.id)
        for job_id, (trigger, args) in wanted.items():
            existing = scheduler.get_job(job_id)
            if existing is not None and str(existing.trigger) == str(trigger) and list(existing.args) == args:
                continue
            scheduler.add_job(run_job, trigger, args=args, id=job_id, name=job_id, replace_existing=True)

    # --- running jobs ----------------------------------------------------------------------------

    def run(self, job: str, rule: str | None = None) -> int:
        """Run one job now; errors are logged (the scheduler keeps going), the count of actions returned."""
        engine = self.engine
        try:
            if job == "events":
                total = 0
                while not self._stop.is_set():
                    done = engine.process_events()
                    total += done
                    if not done:
                        break
                self.health.ok()
                return total
            if job == "sweep":
                done = int(engine.sweep())
                self.health.ok()
                return done
            if job == "schedule" and rule is not None:
                found = self.rules.by_name(rule)
                if found is None or not isinstance(found.trigger, ScheduleTrigger):
                    return 0
                fired = last_fire_time(schedule_trigger(found.trigger), self.clock(),
                                       timedelta(seconds=self.config.rules.misfire_grace))
                return int(engine.run_schedule(rule, fired)) if fired is not None else 0
        except Exception as exc:
            log.exception("rules job %s failed", f"{job}:{rule}" if rule else job)
            self.health.failed(exc, self.config.rules.event_interval)
        return 0


def schedule_trigger(trigger: ScheduleTrigger) -> BaseTrigger:
    tz = ZoneInfo(trigger.timezone)
    if trigger.cron is not None:
        return CronTrigger.from_crontab(trigger.cron, timezone=tz)
    assert trigger.every is not None
    return IntervalTrigger(seconds=int(trigger.every.total_seconds()), start_date=INTERVAL_ORIGIN, timezone=tz)


def last_fire_time(trigger: BaseTrigger, now: datetime, lookback: timedelta) -> datetime | None:
    """The latest scheduled time at or before `now`, within `lookback` (the occurrence a run stands for)."""
    last = None
    candidate = trigger.get_next_fire_time(None, now - lookback)
    while candidate is not None and candidate <= now:
        last = candidate
        candidate = trigger.get_next_fire_time(candidate, candidate + timedelta(microseconds=1))
    return last.astimezone(UTC) if last is not None else None
