"""What a rule file becomes once loaded: plain, frozen objects the engine runs.

The loader (`maild.rules.loader`) builds these from YAML and reports every problem as
`FILE:LINE:COLUMN: key: what was expected`; the engine (`maild.rules.engine`) only ever sees valid rules.

Rule file shape (documented for users in docs/rules.md):

    timezone: Europe/Berlin            # optional; else the config's rules.timezone
    rules:
      - name: dunning-level-1          # unique across all files
        description: ...
        enabled: true                  # optional
        on:                            # exactly one trigger kind:
          event: mail.matched          #   event type(s) from the timeline (a string or a list)
          # schedule: {cron: "0 8 * * mon-fri"} | {every: 15m}
          # sweep: invoice             #   a record kind with a date field and an offset window:
          # date: due_on
          # offset: 7d                 #   fires on or after date + offset ...
          # until: 21d                 #   ... and before date + until (optional)
        if:                            # an expression, or a list of them (all must hold)
          - invoice.status == "open"
        once_per: invoice.dunning_repeats   # optional: extra part of the idempotency key
        do:                            # actions, run in order
          - send: {template: dunning-reminder, to: contact, attach: [invoice_pdf]}
          - set: {invoice.dunning_level: "1", invoice.last_dunned_at: "now"}
          - stop: true
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

# Re-exported: defined here first, imported from here by the loader, the CLI and tests.
from maild.rules.errors import Position as Position
from maild.rules.errors import RuleError as RuleError
from maild.rules.errors import RuleErrors as RuleErrors

if TYPE_CHECKING:
    from maild.rules.expressions import Expression, TextTemplate


# --- Triggers ------------------------------------------------------------------------------------

# Event types a rule may react to: those maild records, plus the derived `mail.replied`
# (a matched inbound mail that answers one of our sent mails).
EVENT_TYPES = frozenset({
    "mail.received", "mail.matched", "mail.unmatched", "mail.assigned", "mail.filed", "mail.replied",
    "mail.sent", "mail.opened", "mail.clicked",
    "mail.bounced", "mail.delayed", "mail.complained", "address.cleared", "rule.held_back",
    "invoice.created", "invoice.updated", "invoice.paid", "payment.recorded",
    "invoice.held", "invoice.hold_escalated", "invoice.resumed", "invoice.promised", "invoice.disputed",
    "meeting.created", "meeting.updated", "meeting.cancelled", "task.created", "task.done", "note.added",
})

SweepRecord = Literal["invoice", "meeting"]
# The date fields a sweep may count from, per record kind.
SWEEP_DATES: dict[str, frozenset[str]] = {
    "invoice": frozenset({"issued_on", "due_on", "last_dunned_at", "paid_at"}),
    "meeting": frozenset({"start_at", "end_at"}),
}


@dataclass(frozen=True)
class EventTrigger:
    types: tuple[str, ...]
    kind: Literal["event"] = "event"


@dataclass(frozen=True)
class ScheduleTrigger:
    """A cron expression (5 fields) or a fixed interval, in `timezone`."""

    cron: str | None
    every: timedelta | None
    timezone: str
    kind: Literal["schedule"] = "schedule"


@dataclass(frozen=True)
class SweepTrigger:
    """Fires for each record with `date + offset <= now` (and `now < date + until` when set): on-or-after,
    so a daemon that was down catches up; the ledger makes it fire once per record (and `once_per`)."""

    record: SweepRecord
    date: str
    offset: timedelta
    until: timedelta | None = None
    kind: Literal["sweep"] = "sweep"


Trigger = EventTrigger | ScheduleTrigger | SweepTrigger


# --- Names an expression may use, per trigger kind (the loader rejects any other name) ------------

COMMON_NAMES = frozenset({"now", "today", "rule"})
CONTEXT_NAMES: dict[str, frozenset[str]] = {
    "event": COMMON_NAMES | {"event", "message", "thirdparty", "contact", "invoice", "meeting", "owner"},
    "sweep:invoice": COMMON_NAMES | {"invoice", "thirdparty", "contact", "owner"},
    "sweep:meeting": COMMON_NAMES | {"meeting", "thirdparty", "attendees", "owner"},
    "schedule": COMMON_NAMES,
}
# Helper functions callable in expressions (implemented by maild.rules.context):
#   days_since(t), days_until(t): whole days between now and a date/datetime (negative when in the past/future)
#   days_overdue(): for an invoice, days past its due date (0 when not due)
#   amount_due(): for an invoice, amount - paid_amount + late_fees
#   replied_since(t): a person of the current third party wrote to us after t (None means: ever); machine mail
#     (out-of-office and other auto-replies, bounces, list mail, notifications) does not count
#   auto_replied_since(t): an automatic reply (out-of-office ...) of the current third party came after t
#   undeliverable(x): mail to that address (or contact / third party dict) bounced for good or it complained
#   wrote_to(address, t): we sent mail to that address after t (None means: ever)
#   has_tag(name): the current third party carries that tag
#   business_hours(): now is within the configured business hours (rules.business_hours)
#   contact_with_role(role): the current third party's first contact with that role (dict), else None
#   duration(text): a timedelta from "7d", "2h", "1w", "90m", "1d12h"
FUNCTIONS = frozenset({
    "days_since", "days_until", "days_overdue", "amount_due", "replied_since", "wrote_to", "has_tag",
    "business_hours", "contact_with_role", "duration", "auto_replied_since", "undeliverable",
})


# --- Actions -------------------------------------------------------------------------------------


# `send.attach: [dunning_pdf]` (the level after the invoice's current one) or `dunning_pdf:2` (that level).
DUNNING_PDF = re.compile(r"^dunning_pdf(?::([1-9]))?$")


@dataclass(frozen=True)
class SendAction:
    """Send a template through the outbox. `to` evaluates to an address, a contact/thirdparty dict, or a
    list of those (`attendees`); `attach` names generated documents (`invoice_pdf`) or stored files."""

    template: str
    to: Expression
    attach: tuple[str, ...] = ()
    language: Expression | None = None


@dataclass(frozen=True)
class MoveAction:
    """File the event's message: into `folder` (a text template), or per the filing config when None."""

    folder: TextTemplate | None = None


@dataclass(frozen=True)
class TagAction:
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    target: Literal["thirdparty", "message"] = "thirdparty"


# Fields a `set` action may write, as `record.field` (thirdparty.fields.NAME writes a custom field).
SETTABLE_FIELDS = frozenset({
    "invoice.status", "invoice.dunning_level", "invoice.dunning_repeats", "invoice.last_dunned_at",
    "invoice.late_fees", "thirdparty.owner", "thirdparty.kind", "meeting.status",
})
SETTABLE_PREFIXES = ("thirdparty.fields.",)


@dataclass(frozen=True)
class SetAction:
    assignments: tuple[tuple[str, Expression], ...]


@dataclass(frozen=True)
class AssignAction:
    owner: Expression


@dataclass(frozen=True)
class TaskAction:
    title: TextTemplate
    owner: Expression | None = None
    due: timedelta | None = None
    kind: Literal["task", "agenda"] = "task"


@dataclass(frozen=True)
class NoteAction:
    text: TextTemplate


@dataclass(frozen=True)
class WebhookAction:
    """A signed POST (HMAC-SHA256 of the body in `X-Maild-Signature`, the idempotency key in
    `Idempotency-Key`); `secret` names one of the config's `rules.webhook_secrets`, never the secret itself."""

    url: str
    secret: str
    timeout: float = 10.0


@dataclass(frozen=True)
class StopAction:
    """No later rule runs for the same subject in this pass."""


ActionSpec = (SendAction | MoveAction | TagAction | SetAction | AssignAction | TaskAction | NoteAction
              | WebhookAction | StopAction)

ACTION_NAMES = ("send", "move", "tag", "set", "assign", "task", "note", "webhook", "stop")


@dataclass(frozen=True)
class Action:
    name: str  # one of ACTION_NAMES
    spec: ActionSpec
    position: Position


# --- Rules ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    name: str
    file: str
    position: Position
    trigger: Trigger
    actions: tuple[Action, ...]
    conditions: tuple[Expression, ...] = ()
    once_per: Expression | None = None
    description: str = ""
    enabled: bool = True

    @property
    def context_kind(self) -> str:
        """The key of CONTEXT_NAMES for this rule's trigger."""
        trigger = self.trigger
        return f"sweep:{trigger.record}" if isinstance(trigger, SweepTrigger) else trigger.kind


@dataclass(frozen=True)
class RuleSet:
    """Every rule of every file, in order: files by name, rules as written (this order is the run order)."""

    rules: tuple[Rule, ...] = ()
    files: tuple[str, ...] = ()
    timezone: str = "UTC"

    def by_name(self, name: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.name == name), None)
