"""The rules engine: runs event, sweep and schedule rules; every action once, through the ledger.

- `process_events`: timeline events after the durable cursor (`maild.rules.cursor`), in id order; each event
  is one subject (`event:<id>`); a thread-matched `mail.matched` is also a `mail.replied`.
- `sweep`: each sweep rule's due records (`maild.rules.sweep`: the date window and simple conditions in SQL),
  subjects `invoice:<id>` / `meeting:<id>`; rules run in file order, rule by rule, and `stop` ends the later
  rules for that subject in this pass. It first completes what earlier passes left unfinished (`retry_pending`).
- `run_schedule`: a schedule rule at its fire time, subject `schedule:<ISO time>`.

For each subject the conditions are evaluated (the reason lists the trigger and the conditions that held),
then the actions in order, each with the key `rule:subject:step[:once_per]`; a step that is done is skipped,
a step that failed or is still running elsewhere blocks the later ones. With `simulate=True` nothing is
written: every action becomes a `PlannedAction`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from types import SimpleNamespace
from typing import Any, NamedTuple

from sqlalchemy import Connection, select
from sqlalchemy.exc import OperationalError

from maild.business import holds
from maild.business.hold_mail import HoldWatch
from maild.business.timeline import caused_by
from maild.classify.backfill import store as store_kinds
from maild.classify.backfill import verdict_now
from maild.classify.settings import classify_settings
from maild.clock import as_utc, utcnow
from maild.config import Config
from maild.ingest.context import new_owner_id
from maild.own_mail import OwnMail
from maild.rules import actions, ledger, loops, sweep
from maild.rules.context import (
    Clock,
    Directory,
    Evaluator,
    Replies,
    Scope,
    event_view,
    helpers,
    invoice_view,
    known_attendees,
    meeting_view,
    message_view,
    rule_view,
    swept_invoice_view,
)
from maild.rules.cursor import EventCursor
from maild.rules.explain import Explanation, check_conditions
from maild.rules.expressions import ExpressionError
from maild.rules.model import Action, EventTrigger, Rule, RuleSet, ScheduleTrigger, SweepTrigger
from maild.store.blobs import BlobStore
from maild.store.checkpoints import is_dead_local_process
from maild.store.db import Database
from maild.store.models import Event, Invoice, Meeting, Message

log = logging.getLogger("maild.rules")
_ev, _inv, _mt, _m = Event.__table__, Invoice.__table__, Meeting.__table__, Message.__table__
REPLIED = "mail.replied"
# What a notice says about our own mail (maild/bounces/record.py): rules may act on these, mailing someone else
# (a billing contact for a bounced dunning letter); never the notice's sender (`actions.plan_send`).
NOTICE_EVENTS = frozenset({"mail.bounced", "mail.delayed", "mail.complained"})
UNAUTHENTICATED = "fail"  # messages.auth of mail our trusted server says failed authentication
# Rules react to what other rules did (a task, a note, a sent mail) at most this many actions deep: two rules
# that trigger each other stop there instead of running for ever. (A rule never reacts to what it did itself.)
MAX_CHAIN = 5
EVENT_BATCH_ADVANCE = 100  # the cursor is written at least every this many events


class PlannedAction(NamedTuple):
    """What an action would do (simulate), or did: status planned | skipped (nothing to do) | already done |
    failed | running | error.
    (A named tuple: a simulated sweep makes one per action, and this builds in a third of a frozen dataclass's
    time.)"""

    rule: str
    key: str
    subject: str
    action: str
    reason: str
    summary: str
    status: str = "planned"
    thirdparty_id: int | None = None


@dataclass
class _Pass:
    """What one pass (an event batch, a sweep) shares: the clock reading and the loaded directory."""

    clock: Clock
    directory: Directory
    replies: Replies


class _Batch:
    """Consecutive DB-only steps of one subject in ONE transaction: each step's ledger row, effect and
    `rule.action` event still commit together, all of the batch at once."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.transaction = conn.begin()
        self.steps: list[tuple[ledger.Entry, Action, actions.Planned, str]] = []  # done here, with the outcome
        self.closed = False

    def close(self, *, commit: bool) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if commit:
                self.transaction.commit()
            else:
                self.transaction.rollback()
        finally:
            self.conn.close()


class RulesEngine:
    def __init__(self, config: Config, db: Database, rules: RuleSet, *, clock: Callable[[], datetime] = utcnow,
                 simulate: bool = False, owner: str | None = None) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.simulating = simulate
        self.owner = owner or new_owner_id()
        self.own = OwnMail.from_config(config)
        self.cursor = EventCursor(db, clock)
        self.planned: list[PlannedAction] = []
        self._released: tuple[int, date] | None = None  # simulate_day: an invoice whose promise has passed
        self._stage: Any = None
        self._daily_cap: loops.DailyCap | None = None  # the rule mail cap's tally while events are processed
        self.env = actions.Env(config, db, self._plan_filing)
        self.replace_rules(rules)
        self.hold_watch = HoldWatch(config, db, lambda: self.clock())
        self._classify = classify_settings(config)  # None: classification off, every mail is a person's
        if not simulate:
            self.cursor.ensure()
            self.hold_watch.ensure()

    def _classified(self, found: Any) -> Any:
        """A message stored before classification, not yet reached by the backfill: the chain's kind now, stored in
        a transaction of its own (the event is read in another); a simulation only looks, it writes nothing."""
        assert self._classify is not None
        verdict = verdict_now(BlobStore(self.config.blob_dir), self._classify, found)
        if verdict is None:
            return found
        if not self.simulating:
            with self.db.engine.begin() as conn:
                store_kinds(conn, {found.id: verdict})
        return SimpleNamespace(**{**found._mapping, "kind": verdict.kind})

    def replace_rules(self, rules: RuleSet) -> None:
        self.rules = rules
        self.evaluator = Evaluator()
        enabled = [rule for rule in rules.rules if rule.enabled]
        self._event_rules = [r for r in enabled if isinstance(r.trigger, EventTrigger)]
        self._sweep_rules = [r for r in enabled if isinstance(r.trigger, SweepTrigger)]
        self._compiled = {r.name: sweep.compile_rule(r) for r in self._sweep_rules}
        self._pass_constant = {id(a) for r in enabled for a in r.actions if actions.same_for_every_subject(a)}
        self._pass_plans: dict[tuple[int, bool, bool, bool], actions.Planned] = {}
        # Per rule, for `_act_simulated`: each step's action, kind, planner and whether its plan is per pass.
        self._steps = {r.name: tuple((step, a, a.name, actions.planner(a.name), id(a) in self._pass_constant)
                                     for step, a in enumerate(r.actions)) for r in enabled}

    def _new_pass(self) -> _Pass:
        self._pass_plans = {}
        return _Pass(Clock.of(self.config, self.clock(), self.rules.timezone), Directory(), Replies(self.own))

    # --- events -----------------------------------------------------------------------------------------

    def process_events(self, limit: int = 500) -> int:
        """Run the event rules over the events after the cursor (at most `limit`); returns actions taken."""
        if not self.simulating:
            self.maintain_holds()
        rows = self.cursor.read(limit)
        taken = 0
        cap = self.config.machine_mail.rule_mail_daily_cap
        self._daily_cap = loops.DailyCap(self.db, cap) if cap else None  # one tally for the batch's rule mail
        try:
            for index, row in enumerate(rows, start=1):
                taken += self._on_event(self._new_pass(), row)
                if not self.simulating and index % EVENT_BATCH_ADVANCE == 0:
                    self.cursor.advance(row.id)
        finally:
            self._daily_cap = None
        if rows and not self.simulating:
            self.cursor.advance(rows[-1].id)
        return taken

    def _chain(self, conn: Connection, row: Any) -> list[str]:
        """The rules whose actions led to this event, the nearest first (up to MAX_CHAIN): an event an action
        caused, on a subject that was itself such an event, and so on."""
        rules: list[str] = []
        while len(rules) < MAX_CHAIN and (key := _cause_key(row)) is not None:
            cause = ledger.cause_of(conn, key)
            if cause is None:
                break
            rules.append(cause.rule)
            if not cause.subject.startswith("event:"):
                break
            row = conn.execute(select(_ev).where(_ev.c.id == _int(cause.subject.removeprefix("event:")))).first()
            if row is None:
                break
        return rules

    def _rules_for(self, row: Any) -> list[tuple[Rule, str]]:
        data = row.data or {}
        replied = row.type == "mail.matched" and data.get("matcher") == "thread"
        out = []
        for rule in self._event_rules:
            types = rule.trigger.types  # type: ignore[union-attr]
            if data.get("rule") == rule.name:
                continue  # never react to what this rule itself did (a task or note it created; see `_chain`)
            if row.type in types:
                out.append((rule, row.type))
            elif replied and REPLIED in types:
                out.append((rule, REPLIED))
        return out

    def _on_event(self, p: _Pass, row: Any, trace: Explanation | None = None) -> int:
        matching = self._rules_for(row)
        if trace is not None:
            matching = [(rule, seen_as) for rule, seen_as in matching if rule.name == trace.rule]
            if not matching:
                traced = self.rules.by_name(trace.rule)
                types = ", ".join(traced.trigger.types) if traced and isinstance(traced.trigger, EventTrigger) else "?"
                trace.gate_open = False
                trace.gate.append(f"this event ({row.type}) was written by this rule itself: a rule never reacts to "
                                  "what it did" if (row.data or {}).get("rule") == trace.rule else
                                  f"the rule reacts to {types}; this event is {row.type}")
                return 0
            trace.gate.append(f"the rule reacts to {row.type} events: this one is event #{row.id}")
        data = row.data or {}
        subject = f"event:{row.id}"
        taken = 0
        with self.db.engine.connect() as conn:
            chain = self._chain(conn, row) if _cause_key(row) is not None else []
            if chain:  # never react to what the same rule did (the mail it sent, the invoice it marked paid)
                matching = [(rule, seen_as) for rule, seen_as in matching if rule.name != chain[0]]
                if not matching:
                    if trace is not None:
                        trace.gate_open = False
                        trace.gate.append(f"this event was caused by the rule itself ({chain[0]}): a rule never "
                                          "reacts to what it did")
                    return 0
            if len(chain) >= MAX_CHAIN:
                path = " -> ".join(reversed(chain))
                if trace is not None:
                    trace.gate_open = False
                    trace.gate.append(f"this event is the end of {len(chain)} rule actions in a row ({path}); rules "
                                      "that trigger each other stop here")
                    return 0
                for rule, seen_as in matching:
                    run = actions.Run(rule.name, subject, f"event {seen_as} #{row.id}", {},
                                      thirdparty_id=row.thirdparty_id, message_id=row.message_id)
                    self._failed_early(rule, run, "if", f"not acted on: this event is the end of {len(chain)} rule "
                                       f"actions in a row ({path}); rules that trigger each other stop here")
                return 0
            tp_id = row.thirdparty_id
            p.directory.load(conn, [tp_id])
            thirdparty = p.directory.thirdparty(tp_id)
            contact = p.directory.contact(tp_id, data.get("contact_id"))
            message = invoice = meeting = None
            if row.message_id is not None:
                found = conn.execute(select(_m).where(_m.c.id == row.message_id)).first()
                if found is not None and found.kind is None and self._classify is not None:
                    # stored before classification and not yet reached by the backfill: the chain decides now
                    # whether it is machine mail (never answered by a rule's mail), not the missing kind
                    found = self._classified(found)
                if found is not None and found.auth == UNAUTHENTICATED:
                    # A forged sender triggers nothing; only filing the mail (rules that just move it) goes on.
                    matching = [(rule, seen_as) for rule, seen_as in matching if _only_files(rule)]
                    if trace is not None and not matching:
                        trace.gate_open = False
                        trace.gate.append(f"message {row.message_id} failed sender authentication "
                                          f"({found.auth_reason or 'dmarc=fail'}): only filing rules act on it")
                        return 0
                    log.info("event %s: message %s failed authentication; %s", row.id, row.message_id,
                             "only its filing rules act on it" if matching else "no rule acts on it",
                             extra={"fields": {"event": row.id, "message": row.message_id}})
                    if not matching:
                        return 0
                if found is not None and found.kind not in (None, "human") and row.type not in NOTICE_EVENTS:
                    # Machine mail (a bounce, an auto-reply, list mail...): never answered by a rule's mail (loops).
                    held = [rule.name for rule, _ in matching if _sends(rule)]
                    matching = [(rule, seen_as) for rule, seen_as in matching if not _sends(rule)]
                    if held:
                        log.info("event %s: message %s is %s; rules that send mail do not act on it: %s", row.id,
                                 row.message_id, found.kind, ", ".join(held),
                                 extra={"fields": {"event": row.id, "message": row.message_id}})
                    if not matching:
                        return 0
                message = message_view(found) if found is not None else None
                if message is not None:
                    message["outbound"] = self.own.is_own(message["from"])  # our own mail (a sent copy, a colleague)
            invoice_id = _int(data.get("invoice_id"))
            if invoice_id is not None:
                found = conn.execute(select(_inv).where(_inv.c.id == invoice_id)).first()
                invoice = invoice_view(conn, found) if found is not None else None
            meeting_id = _int(data.get("meeting_id"))
            if meeting_id is not None:
                found = conn.execute(select(_mt).where(_mt.c.id == meeting_id)).first()
                meeting = meeting_view(found) if found is not None else None
            owner = (meeting or {}).get("owner") or (thirdparty or {}).get("owner")
            for rule, seen_as in matching:
                event = event_view(row, seen_as)
                head = f"event {seen_as} #{row.id}"
                if seen_as != row.type:
                    head += f" ({row.type} by the thread matcher)"
                if thirdparty:
                    head += f" of {thirdparty['name']}"
                names = {"event": event, "message": message, "thirdparty": thirdparty, "contact": contact,
                         "invoice": invoice, "meeting": meeting, "owner": owner}
                run = actions.Run(rule.name, subject, head, {}, evaluator=self.evaluator, thirdparty_id=tp_id,
                                  message_id=row.message_id, invoice_id=invoice["id"] if invoice else None,
                                  meeting_id=meeting["id"] if meeting else None, event=event)
                run.names = self._names(p, conn, rule, names)
                if trace is not None:
                    trace.what = head
                done, stop = self._run(conn, rule, run, head, trace=trace)
                taken += done
                if stop:
                    break
        return taken

    # --- sweeps -----------------------------------------------------------------------------------------

    def sweep(self) -> int:
        """Every enabled sweep rule once, at clock(); first, what earlier passes left unfinished."""
        if not self.simulating:
            self.maintain_holds()  # first: a reply that came meanwhile holds its invoice before a reminder goes
        taken = 0 if self.simulating else self.retry_pending()
        p = self._new_pass()
        stopped: set[str] = set()
        for rule in self._sweep_rules:
            taken += self._sweep_rule(p, rule, stopped)
        return taken

    def maintain_holds(self) -> int:
        """Holds from new mail (maild.business.hold_mail), promises whose day has passed released, holds nobody
        resolved escalated. Returns the number of changes."""
        done = self.hold_watch.run()
        now = self.clock()
        today = Clock.of(self.config, now, self.rules.timezone).today
        with self.db.engine.begin() as conn:
            done += holds.release_promises(conn, today, now) + holds.escalate(conn, self.config, now)
        return done

    def _sweep_rule(self, p: _Pass, rule: Rule, stopped: set[str], trace: Explanation | None = None,
                    only: int | None = None) -> int:
        """One sweep rule over its candidates: the conditions SQL could not check, then the actions of each
        subject that passed, in id order (as `_run` does for one subject, with what is the same for every
        subject of the rule worked out once).

        With `trace` (explain): only the record `only`, whatever its window (the trace says whether the window
        holds, from the same SQL), every condition evaluated in Python and recorded, actions only when both hold."""
        trigger = rule.trigger
        assert isinstance(trigger, SweepTrigger)
        compiled = self._compiled.get(rule.name) or sweep.compile_rule(rule)  # explain: also a disabled rule
        record = trigger.record
        taken = 0
        with self.db.engine.connect() as conn:
            if trace is not None:
                compiled = sweep.SweepQuery((), (True,) * len(rule.conditions), compiled.replies)
                rows = conn.execute(sweep.candidates(rule, compiled, p.clock, only=only,
                                                     text_times=conn.dialect.name == "sqlite")).all()
            else:
                scan = sweep.prefer_scan(conn, rule, compiled)
                rows = conn.execute(sweep.candidates(rule, compiled, p.clock, scan=scan,
                                                     text_times=conn.dialect.name == "sqlite")).all()
            if stopped:
                rows = [r for r in rows if f"{record}:{r.id}" not in stopped]
            if not rows:
                return 0
            tp_ids = [r.thirdparty_id for r in rows]
            directory = p.directory
            directory.load(conn, tp_ids)
            if compiled.replies:
                p.replies.load(conn, tp_ids)
            known = ledger.statuses(conn, rule.name, [f"{record}:{r.id}" for r in rows])
            scope = Scope(p.clock, conn, self.own, p.replies, directory)
            base = {"now": p.clock.now, "today": p.clock.today, "rule": rule_view(rule), **helpers(scope)}
            checks = [self.evaluator.function(c)
                      for c, python in zip(rule.conditions, compiled.in_python, strict=True) if python]
            held = "".join([f"; {c.source}" for c in rule.conditions])  # the reason: "; ".join([head, *sources])
            label = sweep.describe(trigger)
            evaluator = self.evaluator
            is_invoice = record == "invoice"
            rule_name, date_field, offset = rule.name, trigger.date, trigger.offset
            once_of = self.evaluator.function(rule.once_per) if rule.once_per is not None else None
            whole_days = not offset % sweep.DAY  # then `fire_moment` is `(value + offset).isoformat()`
            clock = p.clock
            contact_of, thirdparty_of = directory.contact, directory.thirdparty
            new_run = actions.Run
            act = self._act
            for row in rows:
                names = base.copy()
                if is_invoice:
                    view = swept_invoice_view(conn, row)
                    if trace is not None and self._released is not None and self._released[0] == view["id"]:
                        view["status"] = "open"  # simulated: the promise of this date has passed, the hold ended
                    tp_id = view["thirdparty_id"]
                    thirdparty = thirdparty_of(tp_id)
                    names["invoice"] = view
                    names["thirdparty"] = thirdparty
                    names["contact"] = contact_of(tp_id, view["contact_id"])
                    names["owner"] = thirdparty.get("owner") if thirdparty else None
                    scope.invoice = view
                else:
                    view = meeting_view(row)
                    tp_id = view["thirdparty_id"]
                    thirdparty = thirdparty_of(tp_id)
                    names["meeting"] = view
                    names["thirdparty"] = thirdparty
                    names["attendees"] = known_attendees(view["attendees"])
                    names["owner"] = view["owner"] or (thirdparty or {}).get("owner")
                    scope.invoice = None
                scope.thirdparty = thirdparty
                error = once = None
                try:
                    passed = True
                    if trace is not None:
                        trace.what = f"{record} {view.get('ref') or view['id']}" + (
                            f" of {thirdparty['name']}" if thirdparty else "")
                        if not check_conditions(trace, rule.conditions, evaluator.value, names) \
                                or not trace.gate_open:
                            continue
                    for check in checks:
                        if not check(names):
                            passed = False
                            break
                    if not passed:
                        continue
                    once = once_of(names) if once_of is not None else None
                except ExpressionError as exc:
                    error = str(exc)
                record_id = view["id"]
                subject = f"{record}:{record_id}"
                what = f"invoice {view['ref']}" if is_invoice else f"meeting #{record_id}"
                value = view[date_field]
                when = (value + offset).isoformat() if whole_days else sweep.fire_moment(trigger, value, clock)
                head = f"sweep {what} {label} ({when} <= now)"
                if is_invoice:
                    run = new_run(rule_name, subject, head, names, tp_id, None, record_id, None, None, view, evaluator)
                else:
                    run = new_run(rule_name, subject, head, names, tp_id, None, None, record_id, None, view, evaluator)
                if error is not None:
                    self._failed_early(rule, run, "if", error)
                    continue
                run.reason = head + held
                done, stop = act(conn, rule, run, head, once, known)
                taken += done
                if stop:
                    stopped.add(subject)
        return taken

    # --- schedules --------------------------------------------------------------------------------------

    def run_schedule(self, rule_name: str, fire_time: datetime) -> int:
        rule = self.rules.by_name(rule_name)
        if rule is None or not rule.enabled or not isinstance(rule.trigger, ScheduleTrigger):
            log.warning("no enabled schedule rule %r; nothing run", rule_name)
            return 0
        fire = as_utc(fire_time) or fire_time
        p = self._new_pass()
        subject = f"schedule:{fire.isoformat()}"
        trigger = rule.trigger
        what = trigger.cron if trigger.cron else f"every {trigger.every}"
        head = f"schedule {what} at {fire.isoformat()}"
        with self.db.engine.connect() as conn:
            run = actions.Run(rule.name, subject, head, {}, evaluator=self.evaluator)
            run.names = self._names(p, conn, rule, {})
            return self._run(conn, rule, run, head)[0]

    # --- simulate ---------------------------------------------------------------------------------------

    def simulate(self, since: datetime) -> list[PlannedAction]:
        """What the rules would do: events since `since` replayed, then the sweeps at now. Writes nothing."""
        if not self.simulating:
            return RulesEngine(self.config, self.db, self.rules, clock=self.clock, simulate=True).simulate(since)
        self.planned = []
        after = 0
        while True:
            with self.db.engine.connect() as conn:
                rows = conn.execute(select(_ev).where(_ev.c.occurred_at >= as_utc(since), _ev.c.id > after)
                                    .order_by(_ev.c.id).limit(1000)).all()
            if not rows:
                break
            for row in rows:
                self._on_event(self._new_pass(), row)
            after = rows[-1].id
        self.sweep()
        return list(self.planned)

    # --- explain ----------------------------------------------------------------------------------------

    def explain(self, rule_name: str, subject: str) -> Explanation:
        """Would `rule_name` fire for `subject` (`invoice:12`, `meeting:7`, `event:345`, or `schedule` for a
        schedule rule) at clock()? Evaluated as a pass would, nothing written. Raises LookupError when the rule
        or the subject does not exist or do not fit together (the message says which)."""
        if not self.simulating:
            engine = RulesEngine(self.config, self.db, self.rules, clock=self.clock, simulate=True)
            return engine.explain(rule_name, subject)
        from maild.rules.summary import trigger_summary

        rule = self.rules.by_name(rule_name)
        if rule is None:
            known = ", ".join(r.name for r in self.rules.rules) or "none"
            raise LookupError(f"no rule named {rule_name!r} (rules: {known})")
        kind, _, ident = subject.partition(":")
        p = self._new_pass()
        trace = Explanation(rule.name, rule.file, trigger_summary(rule.trigger), subject, p.clock.local)
        if not rule.enabled:
            trace.gate_open = False
            trace.gate.append("the rule is disabled (enabled: false)")
        self.planned = []
        trigger = rule.trigger
        if isinstance(trigger, SweepTrigger):
            if kind != trigger.record:
                raise LookupError(f"{rule.name} sweeps {trigger.record}s; give a subject {trigger.record}:ID")
            record_id = self._record_id(trigger.record, ident)
            with self.db.engine.connect() as conn:
                opened, lines = sweep.window_state(conn, trigger, p.clock, record_id)
            trace.gate += lines
            trace.gate_open = trace.gate_open and opened
            if not lines or lines[0].startswith("no "):
                raise LookupError(lines[0] if lines else f"no {subject}")
            if trigger.record == "invoice":
                with self.db.engine.connect() as conn:
                    held = holds.active(conn, record_id)
                if held is not None:
                    trace.notes.append(f"held since {held.since.astimezone(p.clock.zone).isoformat(timespec='minutes')}"
                                       f": {held.reason}; decides: {held.owner or 'nobody named'}"
                                       + (f" (until {held.until.isoformat()})" if held.until else ""))
            self._sweep_rule(p, rule, set(), trace, record_id)
        elif isinstance(trigger, EventTrigger):
            event_id = _int(ident) if kind == "event" else None
            if event_id is None:
                raise LookupError(f"{rule.name} runs on events; give a subject event:ID (see `maild timeline`)")
            with self.db.engine.connect() as conn:
                row = conn.execute(select(_ev).where(_ev.c.id == event_id)).first()
            if row is None:
                raise LookupError(f"no event #{event_id}")
            self._on_event(p, row, trace)
        else:
            trace.gate.append("a schedule rule: it runs at its times (see `maild rules check`); its conditions now:")
            with self.db.engine.connect() as conn:
                run = actions.Run(rule.name, f"schedule:{p.clock.now.isoformat()}", "schedule", {},
                                  evaluator=self.evaluator)
                run.names = self._names(p, conn, rule, {})
                self._run(conn, rule, run, "schedule", trace=trace)
        trace.actions = [a for a in self.planned if a.rule == rule.name]
        return trace

    def _record_id(self, record: str, ident: str) -> int:
        """An invoice by id or number (`FA2611-0105`), a meeting by id or calendar UID."""
        table = _inv if record == "invoice" else _mt
        by = table.c.ref if record == "invoice" else table.c.uid
        with self.db.engine.connect() as conn:
            found = conn.execute(select(table.c.id).where(by == ident)).scalar()
            if found is None and _int(ident) is not None:
                found = conn.execute(select(table.c.id).where(table.c.id == _int(ident))).scalar()
        if found is None:
            raise LookupError(f"no {record} {ident!r} (give its {'number' if record == 'invoice' else 'UID'} or id)")
        return int(found)

    def simulate_day(self) -> list[PlannedAction]:
        """What the rules would do at clock() given today's data: the sweeps at that moment (an invoice whose
        promised payment date has passed by then counted as open again, as the real pass would release it), and
        every schedule rule at each of its times on that (local) day. No events are replayed (they have not
        happened). Writes nothing."""
        if not self.simulating:
            return RulesEngine(self.config, self.db, self.rules, clock=self.clock, simulate=True).simulate_day()
        from maild.rules.scheduler import schedule_trigger

        self.planned = []
        self.sweep()
        moment = self.clock()
        clock = self._new_pass().clock
        self._sweep_released_promises(clock)
        start = datetime.combine(clock.today, time(0), clock.zone)
        end = start + timedelta(days=1)
        for rule in self.rules.rules:
            if not rule.enabled or not isinstance(rule.trigger, ScheduleTrigger):
                continue
            trigger = schedule_trigger(rule.trigger)
            fire = trigger.get_next_fire_time(None, start)
            try:
                while fire is not None and fire < end:
                    self.clock = lambda fire=fire: fire  # type: ignore[misc]  # the rule sees its own fire time
                    self.run_schedule(rule.name, fire)
                    fire = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
            finally:
                self.clock = lambda: moment
        return list(self.planned)

    def _sweep_released_promises(self, clock: Clock) -> None:
        """Simulation: the invoice sweeps for invoices whose promise would be released by `clock` (status held
        now, open again then), each evaluated as `explain` does, with the status it would have."""
        with self.db.engine.connect() as conn:
            released = holds.promises_released_by(conn, clock.today)
        for invoice_id, until in released:
            p = self._new_pass()
            for rule in self._sweep_rules:
                trigger = rule.trigger
                assert isinstance(trigger, SweepTrigger)
                if trigger.record != "invoice":
                    continue
                with self.db.engine.connect() as conn:
                    opened, _ = sweep.window_state(conn, trigger, p.clock, invoice_id)
                if not opened:
                    continue
                trace = Explanation(rule.name, rule.file, "", f"invoice:{invoice_id}", p.clock.local)
                self._released = (invoice_id, until)
                try:
                    self._sweep_rule(p, rule, set(), trace, invoice_id)
                finally:
                    self._released = None

    # --- one rule, one subject --------------------------------------------------------------------------

    def _names(self, p: _Pass, conn: Connection, rule: Rule, records: dict[str, Any]) -> dict[str, Any]:
        scope = Scope(p.clock, conn, self.own, p.replies, p.directory, thirdparty=records.get("thirdparty"),
                      invoice=records.get("invoice"))
        return {"now": p.clock.now, "today": p.clock.today, "rule": rule_view(rule), **records, **helpers(scope)}

    def _run(self, conn: Connection, rule: Rule, run: actions.Run, head: str,
             known: dict[str, str] | None = None, in_python: tuple[bool, ...] | None = None,
             trace: Explanation | None = None) -> tuple[int, bool]:
        """Conditions, then the actions in order. Returns (actions taken, stop). With `trace` (explain), every
        condition is evaluated and recorded there."""
        names = run.names
        held = []
        if trace is not None and not check_conditions(trace, rule.conditions, self.evaluator.value, names):
            return 0, False
        try:
            for index, condition in enumerate(rule.conditions):
                if (in_python is None or in_python[index]) and not self.evaluator.value(condition, names):
                    return 0, False
                held.append(condition.source)
            once = self.evaluator.value(rule.once_per, names) if rule.once_per is not None else None
        except ExpressionError as exc:
            run.reason = head
            self._failed_early(rule, run, "if", str(exc))
            return 0, False
        run.reason = "; ".join([head, *held])
        if known is None:
            known = ledger.statuses(conn, rule.name, [run.subject])
        return self._act(conn, rule, run, head, once, known)

    def _act(self, conn: Connection, rule: Rule, run: actions.Run, head: str, once: Any,
             known: dict[str, str]) -> tuple[int, bool]:
        """The actions of a subject whose conditions held, in order. Returns (actions taken, stop).

        Consecutive DB-only steps share one transaction (`_Batch`); sends and webhooks commit what came before."""
        if self.simulating:
            return 0, self._act_simulated(rule, run, head, once, known)
        taken, stop = 0, False
        trigger = head.split(" (")[0]
        batch: _Batch | None = None
        try:
            for step, action in enumerate(rule.actions):
                key = ledger.make_key(rule.name, run.subject, step, once)
                status = known.get(key)
                if status in ("done", "skipped"):
                    stop = stop or action.name == "stop"
                    self._note(rule, run, action, key, "", "already done")
                    continue
                if status is not None:  # failed, or running elsewhere: the later steps wait
                    self._note(rule, run, action, key, "", status)
                    break
                try:
                    planned = self._plan(action, run, key)
                except (ExpressionError, actions.ActionError, ValueError, TypeError, LookupError) as exc:
                    self._commit(batch)  # the steps before are done, as they would be one by one
                    batch = None
                    self._failed_early(rule, run, step, str(exc), self._entry(rule, run, trigger, step, action, key))
                    break
                if self.simulating:
                    stop = stop or action.name == "stop"
                    self._note(rule, run, action, key, planned.summary, "planned")
                    continue
                entry = self._entry(rule, run, trigger, step, action, key)
                if action.name in actions.DB_ONLY:
                    if batch is None:
                        batch = _Batch(self.db.engine.connect())
                    done, replayed = self._batched(batch, rule, entry, action, planned, run)
                    if replayed is not None:  # it failed: the batch was rolled back and replayed step by step
                        taken -= len(batch.steps) - replayed
                        batch = None
                    if not done:
                        break
                else:
                    self._commit(batch)
                    batch = None
                    if not self._execute(rule, entry, action, planned, run):
                        break
                known[key] = "done"
                taken += 1
                stop = stop or action.name == "stop"
        except BaseException:
            if batch is not None:
                batch.close(commit=False)
            raise
        self._commit(batch)
        return taken, stop

    def _act_simulated(self, rule: Rule, run: actions.Run, head: str, once: Any, known: dict[str, str]) -> bool:
        """`_act` when simulating: each action becomes a `PlannedAction` (the same ones, in the same order), nothing
        is written. Returns stop."""
        stop = False
        rule_name, subject, reason, tp_id = rule.name, run.subject, run.reason, run.thirdparty_id
        prefix = f"{rule_name}:{subject}:"  # ledger.make_key, built once per subject
        suffix = "" if once is None else f":{once}"
        planned_actions = self.planned
        for step, action, name, plan, per_pass in self._steps[rule_name]:
            key = f"{prefix}{step}{suffix}"
            if len(key) > ledger.KEY_CHARS:
                key = ledger.make_key(rule_name, subject, step, once)
            status = known.get(key) if known else None
            if status in ("done", "skipped"):
                stop = stop or name == "stop"
                planned_actions.append(PlannedAction(rule_name, key, subject, name, reason, name, "already done",
                                                     tp_id))
                continue
            if status is not None:  # failed, or running elsewhere: the later steps wait
                planned_actions.append(PlannedAction(rule_name, key, subject, name, reason, name, status, tp_id))
                break
            try:
                planned = self._plan(action, run, key) if per_pass else plan(action.spec, run, key)
            except (ExpressionError, actions.ActionError, ValueError, TypeError, LookupError) as exc:
                trigger = head.split(" (")[0]
                self._failed_early(rule, run, step, str(exc), self._entry(rule, run, trigger, step, action, key))
                break
            stop = stop or name == "stop"
            status = "planned"
            summary = planned.summary or name
            if name in actions.MAY_DO_NOTHING:
                with self.db.engine.connect() as conn:
                    nothing = actions.nothing_to_do(conn, self.config, name, planned.data)
                if nothing is not None:
                    status, summary = "skipped", f"{summary}: nothing to do, {nothing}"
            planned_actions.append(PlannedAction(rule_name, key, subject, name, reason, summary, status, tp_id))
        return stop

    def _batched(self, batch: _Batch, rule: Rule, entry: ledger.Entry, action: Action, planned: actions.Planned,
                 run: actions.Run) -> tuple[bool, int | None]:
        """A DB-only step in the batch's transaction: (done, None), or (False, None) when another engine claimed
        it. When it raises, the batch is rolled back and its steps done one by one, each in its own transaction
        (`_execute`: the step that fails is recorded as failed): (all done?, how many earlier steps got done)."""
        try:
            done = self._apply(batch.conn, entry, action, planned, run, self.clock())
        except OperationalError:
            raise
        except Exception:
            batch.close(commit=False)
            replayed = 0
            for earlier, earlier_action, earlier_plan, _ in batch.steps:
                if not self._execute(rule, earlier, earlier_action, earlier_plan, run):
                    return False, replayed
                replayed += 1
            return self._execute(rule, entry, action, planned, run), replayed
        if done:
            batch.steps.append((entry, action, planned, done))
        return bool(done), None

    def _commit(self, batch: _Batch | None) -> None:
        if batch is not None and not batch.closed:
            batch.close(commit=True)
            for entry, _, planned, outcome in batch.steps:
                _log_outcome(entry, planned.summary, outcome)

    def _plan(self, action: Action, run: actions.Run, key: str) -> actions.Planned:
        if id(action) not in self._pass_constant:
            return actions.plan(action, run, key)
        same = (id(action), run.invoice_id is None, run.meeting_id is None, run.thirdparty_id is None)
        planned = self._pass_plans.get(same)
        if planned is None:
            planned = self._pass_plans[same] = actions.plan(action, run, key)
        return planned

    @staticmethod
    def _entry(rule: Rule, run: actions.Run, trigger: str, step: int, action: Action, key: str) -> ledger.Entry:
        return ledger.Entry(key=key, rule=rule.name, file=rule.file, trigger=trigger, step=step, subject=run.subject,
                            action=action.name, reason=run.reason, thirdparty_id=run.thirdparty_id,
                            message_id=run.message_id)

    def _note(self, rule: Rule, run: actions.Run, action: Action, key: str, summary: str, status: str) -> None:
        if self.simulating:
            self.planned.append(PlannedAction(rule.name, key, run.subject, action.name, run.reason,
                                              summary or action.name, status, run.thirdparty_id))

    def _failed_early(self, rule: Rule, run: actions.Run, step: int | str, error: str,
                      entry: ledger.Entry | None = None) -> None:
        """A condition, once_per or action value that did not evaluate: one failed row per key, logged."""
        if entry is None:
            entry = ledger.Entry(key=ledger.make_key(rule.name, run.subject, step), rule=rule.name, file=rule.file,
                                 trigger=run.reason.split(" (")[0], subject=run.subject, step=-1, action="if",
                                 reason=run.reason, thirdparty_id=run.thirdparty_id)
        if self.simulating:
            self.planned.append(PlannedAction(rule.name, entry.key, run.subject, entry.action, run.reason,
                                              error, "error", run.thirdparty_id))
            return
        log.warning("rule %s, %s: %s", rule.name, run.subject, error)
        with self.db.engine.begin() as conn:
            ledger.record_failed(self.db, conn, entry, self.clock(), error)

    # --- doing it ---------------------------------------------------------------------------------------

    def _execute(self, rule: Rule, entry: ledger.Entry, action: Action, planned: actions.Planned,
                 run: actions.Run) -> bool:
        now = self.clock()
        detail: dict[str, Any] = {"plan": planned.data, "summary": planned.summary, "owner": self.owner,
                                  "claimed_at": now, "message_id": run.message_id}
        if action.name in actions.DB_ONLY:
            try:
                with self.db.engine.begin() as conn:
                    outcome = self._apply(conn, entry, action, planned, run, now)
                    if not outcome:
                        return False  # another engine did it (and goes on with the later steps)
                _log_outcome(entry, planned.summary, outcome)
                return True
            except OperationalError:
                raise
            except Exception as exc:
                self._failed_early(rule, run, entry.step, f"{type(exc).__name__}: {exc}", entry)
                return False
        with self.db.engine.begin() as conn:
            if not ledger.claim(self.db, conn, entry, now, {**detail, "attempts": 0}):
                return False
        if action.name == "send":
            return self._complete_send(entry, detail)
        return self._complete_webhook(entry, {**detail, "attempts": 0})

    def _apply(self, conn: Connection, entry: ledger.Entry, action: Action, planned: actions.Planned,
               run: actions.Run, now: datetime) -> str:
        """A DB-only step in the caller's transaction: its ledger row, its effect and its `rule.action` event.
        Returns "done", "skipped: <why>" (nothing to do), or "" when another engine has the row (and so did it)."""
        detail: dict[str, Any] = {"plan": planned.data, "summary": planned.summary, "owner": self.owner,
                                  "claimed_at": now, "message_id": run.message_id}
        if not ledger.claim(self.db, conn, entry, now, detail):
            return ""
        with caused_by(entry.key):
            effects = actions.apply(conn, self.env, action.name, planned, run, now)
        if isinstance(effects, actions.Nothing):  # nothing to do: skipped (and why), no event on the timeline
            ledger.skip(conn, entry, now, {**detail, "skipped": effects.reason})
            return f"skipped: {effects.reason}"
        ledger.finish(conn, entry, now, {**detail, "effects": effects}, summary=planned.summary)
        return "done"

    def _complete_send(self, entry: ledger.Entry, detail: dict[str, Any]) -> bool:
        try:
            result = actions.send(self.env, detail["plan"], entry.key, self._daily_cap)
        except OperationalError:
            raise  # left running: a later pass takes it over
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("rule %s: send failed for %s: %s", entry.rule, entry.subject, error)
            with self.db.engine.begin() as conn:
                ledger.fail(conn, entry.key, self.clock(), {**detail, "error": error[:2000]})
            return False
        with self.db.engine.begin() as conn:
            ledger.finish(conn, entry, self.clock(), {**detail, **result}, summary=detail.get("summary", ""))
        log.info("rule %s: %s (%s)", entry.rule, detail.get("summary"), entry.key)
        return True

    def _complete_webhook(self, entry: ledger.Entry, detail: dict[str, Any]) -> bool:
        attempts = int(detail.get("attempts") or 0) + 1
        try:
            result = actions.post_webhook(self.env, detail["plan"], entry.key)
        except Exception as exc:
            now = self.clock()
            error = f"{type(exc).__name__}: {exc}"[:2000]
            again = attempts < ledger.WEBHOOK_ATTEMPTS
            failed = {**detail, "attempts": attempts, "error": error,
                      "next_attempt_at": now + ledger.webhook_delay(attempts) if again else None, "gave_up": not again}
            log.warning("rule %s: webhook failed for %s (attempt %d%s): %s", entry.rule, entry.subject, attempts,
                        "" if again else ", giving up", error)
            with self.db.engine.begin() as conn:
                ledger.fail(conn, entry.key, now, failed)
            return False
        with self.db.engine.begin() as conn:
            ledger.finish(conn, entry, self.clock(), {**detail, "attempts": attempts, "error": None, **result},
                          summary=detail.get("summary", ""))
        return True

    def retry_pending(self) -> int:
        """Complete sends left running by a dead (or long silent) holder; retry failed webhooks when due."""
        if self.simulating:
            return 0
        now = self.clock()
        with self.db.engine.connect() as conn:
            rows = ledger.unfinished(conn)
        done = 0
        for row in rows:
            detail = dict(row.detail or {})
            if "plan" not in detail:
                continue
            if row.status == "running":
                holder = detail.get("owner") or ""
                claimed = _when(detail.get("claimed_at")) or as_utc(row.created_at) or now
                if not (holder == self.owner or is_dead_local_process(holder) or now - claimed >= ledger.STALE_AFTER):
                    continue
            else:
                due = _when(detail.get("next_attempt_at"))
                if int(detail.get("attempts") or 0) >= ledger.WEBHOOK_ATTEMPTS or (due is not None and due > now):
                    continue
            detail.update(owner=self.owner, claimed_at=now.isoformat())
            with self.db.engine.begin() as conn:
                if not ledger.take_over(conn, row.key, row.status, now, detail):
                    continue
            entry = ledger.entry_of(row, _int(detail.get("message_id")))
            ok = self._complete_send(entry, detail) if row.action == "send" else self._complete_webhook(entry, detail)
            done += ok
        return done

    def _plan_filing(self, conn: Connection, decisions: dict[int, int | None]) -> int:
        """Filing per the config, exactly as the matching stage plans it: an account whose filing action is `none`
        gets nothing (filing off means off; `actions` says so before it gets here)."""
        if self._stage is None:
            from maild.matchers.stage import MatchingStage

            self._stage = MatchingStage(self.config, self.db)
        return int(self._stage.plan_filing(conn, decisions))


def _log_outcome(entry: ledger.Entry, summary: str, outcome: str) -> None:
    if outcome.startswith("skipped"):
        log.info("rule %s: skipped, nothing to do: %s (%s): %s", entry.rule, summary, entry.key,
                 outcome.removeprefix("skipped: "))
    else:
        log.info("rule %s: %s (%s)", entry.rule, summary, entry.key)


def _sends(rule: Rule) -> bool:
    """The rule sends mail (it must not answer machine mail: a bounce or an auto-reply would answer back)."""
    return any(action.name == "send" for action in rule.actions)


def _only_files(rule: Rule) -> bool:
    """The rule's actions only move the mail (as the shared-inbox pack files it): harmless for forged mail."""
    return bool(rule.actions) and all(action.name == "move" for action in rule.actions)


def _cause_key(row: Any) -> str | None:
    """The ledger key of the rule action that led to this event: `cause` for what an action wrote (a task, a
    note, an invoice paid), the outbox key for a mail it sent."""
    data = row.data or {}
    key = data.get("cause") or (data.get("key") if row.type == "mail.sent" else None)
    return key if isinstance(key, str) else None


def _uses(rule: Rule, function: str) -> bool:
    return any(function in c.functions for c in rule.conditions)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, str) and value:
        try:
            return as_utc(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None
